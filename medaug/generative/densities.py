"""Log-densities used by the generative models, summed over all non-batch dimensions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def log_bernoulli(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = Σ x log π + (1 − x) log(1 − π), π = sigmoid(logits); x in [0, 1]."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def log_gaussian(x: torch.Tensor, logits: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(x; sigmoid(logits), σ² I) with a fixed σ."""
    mean = torch.sigmoid(logits)
    squared = (x - mean).pow(2).flatten(1).sum(1)
    return -0.5 * squared / sigma**2 - 0.5 * x[0].numel() * math.log(2 * math.pi * sigma**2)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), (B,)."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)


def log_diagonal_normal(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag(σ²)), (B,)."""
    return -0.5 * ((z - mean).pow(2) / log_var.exp() + log_var + math.log(2 * math.pi)).sum(-1)


def kl_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ (μ² + σ² − log σ² − 1), (B,)."""
    return 0.5 * (mean.pow(2) + log_var.exp() - log_var - 1.0).sum(-1)
