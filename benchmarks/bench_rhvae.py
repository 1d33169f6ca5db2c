"""medaug's RHVAE vs pythae 0.1.2's, side by side: same data, same MLP networks, same hyper-parameters.

Data: an example cohort resized to 1×32×40×32 (from bids_examples/simulated_cn_ad, min-max) and
scikit-learn's digits (1×8×8). Hyper-parameters: thesis Table 1.14 (d=10, K=3, ε=1e-3, T=1.5,
λ=1e-2, √β₀=0.3), batch 25, Adam. Figures:
1. time per training step (forward + backward + Adam) of pythae RHVAE, medaug RHVAE, medaug VAE;
2. after the same number of epochs on digits, each model's own validation objective and a common
   yardstick: log p(x) by importance sampling with each model's encoder as proposal (100 samples),
   computed by the same function for all.

Run: python benchmarks/bench_rhvae.py [--epochs 30] [--threads 2]   (needs the `bench` extra: pythae)
"""

import argparse
import math
import time
from pathlib import Path

import torch

from medaug.generative.config import GeneratorConfig
from medaug.generative.densities import log_bernoulli, log_diagonal_normal, log_standard_normal
from medaug.generative.models import build_model

THESIS = dict(latent_dim=10, leapfrog_steps=3, step_size=1e-3, temperature=1.5, regularization=1e-2,
              sqrt_beta_zero=0.3)
EXAMPLE = Path(__file__).resolve().parents[1] / "bids_examples" / "simulated_cn_ad"


def cohort_volumes(shape=(32, 40, 32)) -> torch.Tensor:
    from monai.transforms import Compose, Resized, ScaleIntensityd

    from medaug.data.cohort import load_cohort
    from medaug.data.dataset import cohort_dataset

    cohort = load_cohort(EXAMPLE)
    dataset = cohort_dataset(cohort, Compose([Resized("image", shape), ScaleIntensityd("image")]))
    return torch.stack([dataset[i]["image"].as_tensor() for i in range(len(dataset))]).float()


def digits() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.tensor(load_digits().images / 16.0, dtype=torch.float32)[:, None]


def pythae_rhvae(shape, hidden, metric_hidden):
    from pythae.models import RHVAE, RHVAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder, BaseMetric

    from medaug.nets.mlp import MLPDecoder, MLPEncoder, MLPMetric

    d = THESIS["latent_dim"]

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = MLPEncoder(shape, d, hidden)

        def forward(self, x):
            mean, log_var = self.net(x)
            return ModelOutput(embedding=mean, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = MLPDecoder(shape, d, hidden)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    class Metric(BaseMetric):
        def __init__(self):
            super().__init__()
            self.net = MLPMetric(shape, d, metric_hidden)

        def forward(self, x):
            diagonal, lower = self.net(x)
            factors = torch.diag_embed(diagonal.exp())
            rows, cols = torch.tril_indices(d, d, offset=-1)
            factors[:, rows, cols] = lower
            return ModelOutput(L=factors)

    config = RHVAEConfig(input_dim=shape, latent_dim=d, reconstruction_loss="bce", n_lf=THESIS["leapfrog_steps"],
                         eps_lf=THESIS["step_size"], beta_zero=THESIS["sqrt_beta_zero"],
                         temperature=THESIS["temperature"], regularization=THESIS["regularization"])
    return RHVAE(config, encoder=Encoder(), decoder=Decoder(), metric=Metric())


def medaug_model(name, shape, hidden, metric_hidden, **options):
    flow = {key: value for key, value in THESIS.items() if key != "latent_dim"}
    return build_model(GeneratorConfig(input_shape=shape, model=name, hidden=hidden, latent_dim=THESIS["latent_dim"],
                                       options={"metric_hidden": metric_hidden, **flow, **options} if name == "rhvae" else {}))


def pythae_loss(model, x):
    out = model({"data": x})
    model.M, model.centroids = [], []  # pythae accumulates these until its trainer's end-of-epoch update
    return out.loss


def step_time(model, loss_fn, x, repeats=5):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    times = []
    for repeat in range(repeats + 1):
        start = time.perf_counter()
        loss = loss_fn(model, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if repeat:  # first step warms up
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], bool(torch.isfinite(loss))


def encoder_log_likelihood(encode, decode_logits, x, samples=100):
    """Same IS estimator for every model: proposal q(z|x) of its encoder, Bernoulli decoder."""
    with torch.no_grad():
        mean, log_var = encode(x)
        mean, log_var = mean.repeat_interleave(samples, 0), log_var.repeat_interleave(samples, 0)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        weights = (log_bernoulli(x.repeat_interleave(samples, 0), decode_logits(z)) + log_standard_normal(z)
                   - log_diagonal_normal(z, mean, log_var))
        return float((torch.logsumexp(weights.view(len(x), samples), 1) - math.log(samples)).mean())


def train(model, loss_fn, data, epochs, after_epoch=None, seed=0):
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(data), generator=generator).split(25):
            loss = loss_fn(model, data[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if after_epoch:
            after_epoch(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    medaug_loss = lambda model, x: model.loss(x)  # noqa: E731

    print("time per training step (batch 25, median of 5), ms")
    for name, data, hidden, metric_hidden in [("cohort 1×32×40×32", cohort_volumes(), (500, 500, 400), 400),
                                              ("digits 1×8×8", digits(), (400,), 400)]:
        x = data[:25] if len(data) >= 25 else data.repeat(2, 1, 1, 1, 1)[:25]
        shape = tuple(x.shape[1:])
        torch.manual_seed(0)
        t_pythae, ok_pythae = step_time(pythae_rhvae(shape, hidden, metric_hidden), pythae_loss, x)
        t_rhvae, ok_rhvae = step_time(medaug_model("rhvae", shape, hidden, metric_hidden), medaug_loss, x)
        t_exact, _ = step_time(medaug_model("rhvae", shape, hidden, metric_hidden, second_order=True), medaug_loss, x)
        t_vae, _ = step_time(medaug_model("vae", shape, hidden, metric_hidden), medaug_loss, x)
        print(f"  {name}: pythae RHVAE {1e3 * t_pythae:.1f} (finite: {ok_pythae}) | medaug RHVAE {1e3 * t_rhvae:.1f} "
              f"(finite: {ok_rhvae}), second-order {1e3 * t_exact:.1f} | medaug VAE {1e3 * t_vae:.1f}")
        print(f"    pythae/medaug ×{t_pythae / t_rhvae:.2f}   medaug RHVAE/VAE ×{t_rhvae / t_vae:.2f}   "
              f"second-order/VAE ×{t_exact / t_vae:.2f}")

    data = digits()
    train_set, val_set = data[:1500], data[1500:]
    print(f"digits, {args.epochs} epochs, Adam 1e-3, batch 25 (validation: {len(val_set)} images)")
    torch.manual_seed(0)
    reference = pythae_rhvae((1, 8, 8), (400,), 400)
    train(reference, pythae_loss, train_set, args.epochs)
    reference.train()
    reference({"data": train_set})  # collect the training-set metric as pythae's trainer does
    reference.update()
    reference.eval()
    pythae_objective = float(reference({"data": val_set}).loss)  # pythae's flow needs autograd in eval too
    pythae_ll = encoder_log_likelihood(lambda x: reference.encoder.net(x), reference.decoder.net, val_set)
    rows = [("pythae RHVAE", pythae_objective, pythae_ll)]
    for name in ("rhvae", "vae"):
        torch.manual_seed(0)
        model = medaug_model(name, (1, 8, 8), (400,), 400)
        train(model, medaug_loss, train_set, args.epochs,
              after_epoch=(lambda m: m.update_metric(train_set.split(100))) if name == "rhvae" else None)
        model.eval()
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            objective = float(model.loss(val_set))
        rows.append((f"medaug {name.upper()}", objective, encoder_log_likelihood(model.encoder, model.decoder, val_set)))
    print(f"  {'model':<14} {'val objective (own −ELBO)':>26} {'IS log p(x), encoder proposal':>31}")
    for name, objective, ll in rows:
        print(f"  {name:<14} {objective:26.2f} {ll:31.2f}")
    print("  (pythae's objective omits the velocity densities' constants and log p(ρ₀); compare the last column)")


if __name__ == "__main__":
    main()
