"""Fully connected networks of the thesis (Table 1.10: one hidden layer of 400; Table 1.13 for MRI:
D → 500 → 500 → 400 → d), for inputs of any shape (flattened)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def _stack(sizes: Sequence[int]) -> nn.Sequential:
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x ↦ (μ_φ(x), log σ²_φ(x)), shared hidden layers then two linear heads."""

    def __init__(self, input_shape: Sequence[int], latent_dim: int, hidden: Sequence[int] = (500, 500, 400)) -> None:
        super().__init__()
        self.body = _stack([math.prod(input_shape), *hidden])
        self.mean = nn.Linear(hidden[-1], latent_dim)
        self.log_var = nn.Linear(hidden[-1], latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x.flatten(1))
        return self.mean(h), self.log_var(h)


class MLPDecoder(nn.Module):
    """z ↦ logits (Bernoulli) or mean (Gaussian) of p_θ(x|z), reshaped to the input shape."""

    def __init__(self, output_shape: Sequence[int], latent_dim: int, hidden: Sequence[int] = (500, 500, 400)) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.body = _stack([latent_dim, *reversed(hidden)])
        self.out = nn.Linear(hidden[0], math.prod(output_shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z)).view(-1, *self.output_shape)


class MLPMetric(nn.Module):
    """x ↦ (diagonal, strictly-lower) parameters of L_ψ(x) (Table 1.13: one hidden layer of 400)."""

    def __init__(self, input_shape: Sequence[int], latent_dim: int, hidden: int = 400) -> None:
        super().__init__()
        self.body = _stack([math.prod(input_shape), hidden])
        self.diagonal = nn.Linear(hidden, latent_dim)
        self.lower = nn.Linear(hidden, latent_dim * (latent_dim - 1) // 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x.flatten(1))
        return self.diagonal(h), self.lower(h)
