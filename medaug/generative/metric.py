"""The RHVAE Riemannian metric (thesis Eq. 1.7) and the metric terms of the Hamiltonian, closed form.

    G⁻¹(z) = Σᵢ Mᵢ wᵢ(z) + λ I,   Mᵢ = Lᵢ Lᵢᵀ,   wᵢ(z) = exp(−‖z − cᵢ‖² / T²)

The part of H(z, v) = U(z) + ½ log((2π)ᵈ det G(z)) + ½ vᵀ G⁻¹(z) v that depends on the metric has
the gradient (with ∂ⱼG⁻¹ = Σᵢ Mᵢ wᵢ · (−2 (zⱼ − cᵢⱼ) / T²) and ∂ⱼ log det G = −tr(G ∂ⱼG⁻¹)):

    ∂ⱼ [½ log det G + ½ vᵀ G⁻¹ v] = Σᵢ wᵢ (zⱼ − cᵢⱼ) / T² · (tr(G Mᵢ) − ‖Lᵢᵀ v‖²)

All functions are batched: z, v are (B, d); centroids (N, d); factors L (N, d, d) or (B, N, d, d).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


FACTOR_BOUND = 4.0


def soft_bound(x: torch.Tensor, bound: float = FACTOR_BOUND) -> torch.Tensor:
    """b·tanh(x/b): identity near 0, smoothly bounded by ±b."""
    return bound * torch.tanh(x / bound)


def lower_factors(diagonal: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """L = diag(exp(s(diagonal))) + strictly-lower(s(lower)), s = :func:`soft_bound`; (N, d), (N, d(d−1)/2) → (N, d, d).

    The soft bound keeps ‖L‖ finite when a large input (an MRI volume) pushes the metric
    network's outputs far out: the diagonal stays in [e⁻⁴, e⁴] and Eq. 1.7 stays well conditioned.
    """
    n, d = diagonal.shape
    lower = soft_bound(lower)
    factors = torch.diag_embed(soft_bound(diagonal).exp())
    rows, cols = torch.tril_indices(d, d, offset=-1, device=diagonal.device)
    return factors.index_put((torch.arange(n, device=diagonal.device)[:, None], rows[None], cols[None]), lower)


def metric_weights(z: torch.Tensor, centroids: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """wᵢ(z) = exp(−‖z − cᵢ‖²/T²) (B, N) and the differences z − cᵢ (B, N, d)."""
    difference = z[:, None, :] - centroids[None, :, :]
    return torch.exp(-difference.pow(2).sum(-1) / temperature**2), difference


def inverse_metric(z: torch.Tensor, centroids: torch.Tensor, factors: torch.Tensor, temperature: float,
                   regularization: float, outer: torch.Tensor | None = None) -> torch.Tensor:
    """G⁻¹(z) of Eq. 1.7, (B, d, d); ``outer`` = L Lᵀ (N, d, d) when already computed."""
    weights, _ = metric_weights(z, centroids, temperature)
    outer = factors @ factors.transpose(-1, -2) if outer is None else outer
    identity = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    return torch.einsum("bn,nkl->bkl", weights, outer) + regularization * identity


def log_det_inverse_metric(inverse: torch.Tensor) -> torch.Tensor:
    """log det G⁻¹ from its Cholesky factor (G⁻¹ is symmetric positive definite)."""
    return 2.0 * torch.linalg.cholesky(inverse).diagonal(dim1=-2, dim2=-1).log().sum(-1)


class PositionTerms(NamedTuple):
    """Metric quantities at one batch of positions z, shared by every velocity evaluated there."""

    weights: torch.Tensor      # (B, N) wᵢ(z)
    difference: torch.Tensor   # (B, N, d) z − cᵢ
    inverse: torch.Tensor      # (B, d, d) G⁻¹(z)
    trace: torch.Tensor        # (B, N) tr(G(z) Mᵢ)


def position_terms(z: torch.Tensor, centroids: torch.Tensor, factors: torch.Tensor, temperature: float,
                   regularization: float, outer: torch.Tensor | None = None) -> PositionTerms:
    """Everything of the metric gradient that does not depend on the velocity."""
    weights, difference = metric_weights(z, centroids, temperature)
    outer = factors @ factors.transpose(-1, -2) if outer is None else outer
    identity = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    inverse = torch.einsum("bn,nkl->bkl", weights, outer) + regularization * identity
    trace = torch.einsum("bkl,nkl->bn", torch.cholesky_inverse(torch.linalg.cholesky(inverse)), outer)
    return PositionTerms(weights, difference, inverse, trace)


def metric_gradient(terms: PositionTerms, v: torch.Tensor, factors: torch.Tensor, temperature: float) -> torch.Tensor:
    """∇_z [½ log det G(z) + ½ vᵀ G⁻¹(z) v] in closed form (module docstring), (B, d)."""
    projected = torch.einsum("nkl,bk->bnl", factors, v).pow(2).sum(-1)
    return torch.einsum("bn,bnd->bd", terms.weights * (terms.trace - projected), terms.difference) / temperature**2


def log_normal_metric(v: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """log N(v; 0, G) = −½ [d log 2π − log det G⁻¹ + vᵀ G⁻¹ v], (B,)."""
    d = v.shape[-1]
    quadratic = torch.einsum("bk,bkl,bl->b", v, inverse, v)
    return -0.5 * (d * math.log(2 * math.pi) - log_det_inverse_metric(inverse) + quadratic)


def sample_velocity(inverse: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """v ~ N(0, G) with G = (G⁻¹)⁻¹: v = L⁻ᵀ e where G⁻¹ = L Lᵀ, e ~ N(0, I)."""
    noise = torch.randn(inverse.shape[:-1], generator=generator, dtype=inverse.dtype, device=inverse.device)
    cholesky = torch.linalg.cholesky(inverse)
    return torch.linalg.solve_triangular(cholesky.transpose(-1, -2), noise[..., None], upper=True)[..., 0]
