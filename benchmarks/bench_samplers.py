"""medaug's geometry-aware HMC vs pythae 0.1.2's RHVAESampler: same metric, same chains, side by side.

Both samplers get the same RHVAE metric (latent dimension 10, N centroids, the same Lᵢ), the same
decoder, and the same chain settings (100 HMC steps, 15 leapfrog steps, ε = 0.03); each draws the
same number of samples in one batch. Printed: samples per second (decoding included), the
throughput ratio, and the acceptance rate of medaug's chains (pythae does not report one).

Run: python benchmarks/bench_samplers.py [--centroids 200,2000] [--samples 200] [--threads 2]
"""

import argparse
import time

import torch

from medaug.generative.config import GeneratorConfig
from medaug.generative.models import build_model
from medaug.sampling.samplers import build_sampler

SETTINGS = dict(steps=100, leapfrog_steps=15, step_size=0.03)


def metric_model(centroids: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(GeneratorConfig(input_shape=(1, 8, 8), model="rhvae", hidden=(400,)))
    data = torch.rand(centroids, 1, 8, 8)
    model.update_metric(data.split(500))
    return model.eval(), data


def pythae_sampler(model):
    import sys

    sys.path.insert(0, "benchmarks")
    from bench_rhvae import pythae_rhvae
    from pythae.samplers import RHVAESampler, RHVAESamplerConfig

    reference = pythae_rhvae((1, 8, 8), (400,), 400)
    reference.decoder.net.load_state_dict(model.decoder.state_dict())
    reference.centroids_tens = model.centroids.clone()
    reference.M_tens = (model.factors @ model.factors.transpose(-1, -2)).clone()
    config = RHVAESamplerConfig(mcmc_steps_nbr=SETTINGS["steps"], n_lf=SETTINGS["leapfrog_steps"],
                                eps_lf=SETTINGS["step_size"], beta_zero=1.0)
    return RHVAESampler(reference.eval(), config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--centroids", default="200,2000")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'centroids':>9} {'pythae samples/s':>17} {'medaug samples/s':>17} {'ratio':>7} {'medaug acceptance':>18}")
    for n_centroids in (int(c) for c in args.centroids.split(",")):
        model, data = metric_model(n_centroids)
        sampler = build_sampler("rhvae-hmc", **SETTINGS).fit(model, data)
        start = time.perf_counter()
        result = sampler.sample(args.samples, seed=0, batch_size=args.samples)
        ours = args.samples / (time.perf_counter() - start)
        reference = pythae_sampler(model)
        torch.manual_seed(0)
        start = time.perf_counter()
        reference.sample(num_samples=args.samples, batch_size=args.samples)
        theirs = args.samples / (time.perf_counter() - start)
        print(f"{n_centroids:>9} {theirs:17.1f} {ours:17.1f} {ours / theirs:7.1f}× "
              f"{result.diagnostics['acceptance_rate']:18.2f}", flush=True)


if __name__ == "__main__":
    main()
