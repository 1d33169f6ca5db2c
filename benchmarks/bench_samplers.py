"""medaug's geometry-aware HMC vs pythae 0.1.2's RHVAESampler on one trained RHVAE, side by side.

An RHVAE (Table 1.10 networks, d = 10, T = 1.5, λ = 1e-2) is trained on scikit-learn digits; its
metric is stored for N training images (the centroids). pythae's model gets the same decoder,
centroids and Mᵢ = LᵢLᵢᵀ, and its metric closures G / G_inv are rebuilt from them
(``_update_metric``; copying the tensors alone leaves pythae sampling its start-up identity metric).
Both samplers run the same chains (100 transitions, 15 leapfrog steps, ε = 0.03, starts at
centroids). Printed per N: samples per second (decoding included), the throughput ratio, medaug's
acceptance, ESS per draw and effective samples per second (multi-chain ESS of 16 traced chains,
scaled to all chains), and for pythae the fraction of chains that ever left their start (pythae
returns neither traces nor an acceptance rate, so its ESS cannot be estimated; a chain that never
moves returns a training code).

Known defects of pythae's sampler, which the figures reflect: its gradient of ½ log det G⁻¹ is
G Σᵢ wᵢ Mᵢ (cᵢ − z) / T² where the correct one is Σᵢ wᵢ tr(G Mᵢ) (cᵢ − z) / T² (equal only for
d = 1), and it tempers the velocity inside the HMC proposal.

Run: python benchmarks/bench_samplers.py [--centroids 200,1000] [--samples 200] [--threads 2] [--epochs 30]
"""

import argparse
import sys
import time
from collections import deque

import torch
from sklearn.datasets import load_digits

from medaug.generative.config import GeneratorConfig
from medaug.generative.models import build_model

sys.path.insert(0, "benchmarks")
from bench_rhvae import pythae_rhvae  # noqa: E402

from medaug.sampling.samplers import build_sampler  # noqa: E402

SETTINGS = dict(steps=100, leapfrog_steps=15, step_size=0.03, warmup=0, temperature="model", support="thesis",
                step_jitter=0.0)


def trained_model(epochs: int, seed: int = 0):
    """An RHVAE trained on 1000 digits (Adam 1e-3, batch 100)."""
    digits = load_digits()
    data = torch.tensor(digits.images[:1000] / 16.0, dtype=torch.float32)[:, None]
    torch.manual_seed(seed)
    model = build_model(GeneratorConfig(input_shape=(1, 8, 8), model="rhvae", hidden=(400,),
                                        options={"metric_hidden": 400, "step_size": 1e-2, "regularization": 1e-2}))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in data[torch.randperm(len(data))].split(100):
            optimizer.zero_grad()
            model.loss(batch).backward()
            optimizer.step()
    return model.eval(), data


def pythae_sampler(model):
    from pythae.samplers import RHVAESampler, RHVAESamplerConfig

    reference = pythae_rhvae((1, 8, 8), (400,), 400)
    reference.decoder.net.load_state_dict(model.decoder.state_dict())
    with torch.no_grad():  # pythae keeps T and λ as parameters
        reference.temperature.fill_(model.options.temperature)
        reference.lbd.fill_(model.options.regularization)
    reference.M = deque([(model.factors @ model.factors.transpose(-1, -2)).clone()])
    reference.centroids = deque([model.centroids.clone()])
    reference._update_metric()  # G and G_inv from these tensors, not the start-up identity metric
    config = RHVAESamplerConfig(mcmc_steps_nbr=SETTINGS["steps"], n_lf=SETTINGS["leapfrog_steps"],
                                eps_lf=SETTINGS["step_size"], beta_zero=1.0)
    return reference, RHVAESampler(reference.eval(), config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--centroids", default="200,1000")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, data = trained_model(args.epochs)
    print(f"{'centroids':>9} {'pythae samples/s':>17} {'medaug samples/s':>17} {'ratio':>7} {'medaug accept':>13} "
          f"{'ESS/draw':>9} {'medaug ESS/s':>13} {'pythae chains moved':>20}")
    for n_centroids in (int(c) for c in args.centroids.split(",")):
        model.update_metric(data[:n_centroids].split(500))
        sampler = build_sampler("rhvae-hmc", **SETTINGS).fit(model, data[:n_centroids])
        start = time.perf_counter()
        result = sampler.sample(args.samples, seed=0, batch_size=args.samples)
        seconds = time.perf_counter() - start
        ours = args.samples / seconds
        ess = result.diagnostics["ess_per_draw"] * SETTINGS["steps"] * args.samples
        reference, pythae = pythae_sampler(model)
        torch.manual_seed(0)
        start = time.perf_counter()
        with torch.no_grad():
            theirs_z = pythae.hmc_sampling(args.samples)
            reference.decoder(theirs_z)
        theirs = args.samples / (time.perf_counter() - start)
        moved = float((torch.cdist(theirs_z, reference.centroids_tens).min(1).values > 1e-6).double().mean())
        print(f"{n_centroids:>9} {theirs:17.1f} {ours:17.1f} {ours / theirs:7.1f}× "
              f"{result.diagnostics['acceptance_rate']:13.2f} {result.diagnostics['ess_per_draw']:9.3f} "
              f"{ess / seconds:13.1f} {moved:20.2f}", flush=True)


if __name__ == "__main__":
    main()
