"""Train a 2D-latent RHVAE and a VAE on scikit-learn's digits (one class) and draw the thesis's
Fig. 1.3: the learned log √det G⁻¹ in grey, the training codes, geometry-aware samples and their
decoded images; the VAE's latent space with the geometric sampler (ch. 3) beside it.

Run: python tutorials/latent_geometry_digits.py [--steps 3000] [--out docs]
"""

import argparse
import tempfile
from pathlib import Path

import torch
from sklearn.datasets import load_digits

from medaug.generative.config import GeneratorConfig
from medaug.generative.models import build_model
from medaug.generative.trainer import TrainerConfig, train_generator
from medaug.sampling.figure import plot_latent_geometry
from medaug.sampling.samplers import build_sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps at most (training-loss selection)")
    parser.add_argument("--digit", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    digits = load_digits()
    images = torch.tensor(digits.images[digits.target == args.digit] / 16.0, dtype=torch.float32)[:, None]
    train, validation = images[:150], images[150:]
    for model_name, sampler_name, options in [("rhvae", "rhvae-hmc", dict(steps=100, leapfrog_steps=15,
                                                                          step_size=0.03)),
                                              ("vae", "geometric", dict(steps=100, leapfrog_steps=10,
                                                                        step_size=0.01))]:
        torch.manual_seed(0)
        model = build_model(GeneratorConfig(input_shape=(1, 8, 8), model=model_name, latent_dim=2, hidden=(400,),
                                            step_size=1e-2, temperature=0.8, regularization=1e-3))
        with tempfile.TemporaryDirectory() as tmp:
            result = train_generator(model, train, validation, tmp, TrainerConfig(max_steps=args.steps,
                                                                                  learning_rate=1e-3))
        model = result["model"]
        sampler = build_sampler(sampler_name, **options).fit(model, train)
        samples = sampler.sample(200, seed=0)
        with torch.no_grad():
            codes, _ = model.encoder(train)
        path = plot_latent_geometry(sampler, samples, codes, args.out / f"latent_geometry_{model_name}.png")
        print(f"{model_name} + {sampler_name}: acceptance {samples.diagnostics['acceptance_rate']:.2f}, "
              f"ESS per draw {samples.diagnostics['ess_per_draw']:.2f} → {path}")


if __name__ == "__main__":
    main()
