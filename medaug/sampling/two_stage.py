"""Two-stage VAE sampling (Dai & Wipf, 2019): a second, small VAE fitted on the first model's
posterior means; sampling draws u ~ N(0, I), decodes it to a latent code, then to an image.

The second stage has a Gaussian decoder with a learned scalar variance γ², as in the original
method, on standardised codes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medaug.generative.densities import kl_standard_normal
from medaug.training import Hooks, LoopConfig, TrainingLoop


class CodeVAE(nn.Module):
    """VAE on vectors: MLP encoder/decoder, Gaussian decoder N(μ(u), γ² I) with learned log γ."""

    def __init__(self, dim: int, latent_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, dim))
        self.log_gamma = nn.Parameter(torch.zeros(()))

    def loss(self, codes: torch.Tensor) -> torch.Tensor:
        mean, log_var = self.encoder(codes).chunk(2, dim=-1)
        u = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        residual = (codes - self.decoder(u)).pow(2).sum(-1)
        dim = codes.shape[-1]
        nll = 0.5 * residual / torch.exp(2 * self.log_gamma) + dim * (self.log_gamma + 0.5 * math.log(2 * math.pi))
        return (nll + kl_standard_normal(mean, log_var)).mean()


def sample_codes(model: CodeVAE, centre: torch.Tensor, scale: torch.Tensor, n: int,
                 generator: torch.Generator) -> torch.Tensor:
    """Codes from the second stage's model: μ(u) + γ ε with u, ε ~ N(0, I), un-standardised."""
    u = torch.randn(n, model.decoder[0].in_features, generator=generator, device=generator.device)
    noise = torch.randn(n, len(centre), generator=generator, device=generator.device)
    with torch.no_grad():
        return centre + scale * (model.decoder(u) + model.log_gamma.exp() * noise)


def fit_code_vae(codes: torch.Tensor, latent_dim: int, epochs: int = 300, seed: int = 0,
                 learning_rate: float = 1e-3) -> tuple[CodeVAE, torch.Tensor, torch.Tensor]:
    """Train the second stage on standardised codes; returns it with the codes' mean and std."""
    torch.manual_seed(seed)
    centre, scale = codes.mean(0), codes.std(0).clamp_min(1e-6)
    standard = (codes - centre) / scale
    model = CodeVAE(codes.shape[1], latent_dim).to(codes.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    hooks = Hooks(batches=lambda epoch: (standard[index] for index in
                                         torch.randperm(len(standard), generator=generator).split(64)),
                  train_step=model.loss)
    # no validation set: a fixed number of epochs, the last weights kept
    TrainingLoop(model, optimizer, hooks, LoopConfig(max_epochs=epochs, columns=("epoch",), progress=None)).run()
    return model.eval(), centre, scale
