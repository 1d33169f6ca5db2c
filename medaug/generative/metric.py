"""The RHVAE Riemannian metric (thesis Eq. 1.7): G⁻¹(z), G(z), log det G⁻¹, the sampling target's
½ log det G⁻¹ (Eq. 1.8) and the metric terms of the Hamiltonian (Eq. 1.5), all in closed form.

    G⁻¹(z) = Σᵢ Mᵢ wᵢ(z) + λ I,   Mᵢ = Lᵢ Lᵢᵀ,   wᵢ(z) = exp(−‖z − cᵢ‖² / T²)

With ∂ⱼG⁻¹ = Σᵢ Mᵢ wᵢ · (−2 (zⱼ − cᵢⱼ) / T²), ∂ⱼ log det G⁻¹ = tr(G ∂ⱼG⁻¹) and tr(G Mᵢ) = vec(G)·vec(Mᵢ):

    ∇ ½ log det G⁻¹(z) = −Σᵢ wᵢ tr(G Mᵢ) (z − cᵢ) / T²                               (sampling, Eq. 1.8)
    ∇ ½ vᵀ G⁻¹(z) v    = −Σᵢ wᵢ ‖Lᵢᵀ v‖² (z − cᵢ) / T²                               (geodesics, Eq. 2.1)
    ∇ [½ log det G + ½ vᵀ G⁻¹ v] = Σᵢ wᵢ (z − cᵢ) / T² · (tr(G Mᵢ) − ‖Lᵢᵀ v‖²)       (leapfrog, Eq. 1.5)

All of it runs in float32 with autocast off (:func:`full_precision`): under bf16 autocast the
expanded distances and the matrix products lose positive-definiteness of G⁻¹ once codes lie far
apart at a small temperature, and the Cholesky factorisations fail.

Every one comes from :func:`metric_weights` over :func:`squared_distances` (‖z − cᵢ‖² = ‖z‖² − 2 z·cᵢ +
‖cᵢ‖², matrix products, clamped at 0) and :func:`weighted_differences` (Σᵢ aᵢ (z − cᵢ) = z Σᵢ aᵢ − a C):
no B×N×d difference tensor. :class:`Metric` holds one metric (centroids, factors, T, λ and the Mᵢ) and
is what the RHVAE, its leapfrog, the geodesics and the samplers call; the module functions are its
batched pure-tensor building blocks: z, v are (B, d), centroids (N, d), factors L (N, d, d), outer M (N, d, d).
The log-volume's functions also take K metrics at once (:class:`StackedMetrics`): z (K, B, d), centroids
(K, N, d), outer (K, N, d, d), T and λ broadcastable tensors, every class's chains in one set of kernels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch


FACTOR_BOUND = 4.0


def at_least_fp32(value):
    """A half-precision tensor (bf16, fp16) as float32; anything else as it is (float64 stays)."""
    return value.float() if isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16) else value


def full_precision(function: Callable) -> Callable:
    """``function`` with autocast off and its half-precision tensor arguments in float32 (called as
    it is outside autocast regions: it sits on the sampler's hot path)."""
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        if not (torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")):
            return function(*args, **kwargs)
        args, kwargs = [at_least_fp32(a) for a in args], {k: at_least_fp32(v) for k, v in kwargs.items()}
        device = next((a.device.type for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device, enabled=False):
            return function(*args, **kwargs)
    return wrapped


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


CHUNK = 4096  # centroids per matrix product in the log-volume and G⁻¹: B × CHUNK weights at a time


def squared_distances(z: torch.Tensor, centroids: torch.Tensor, precisions: torch.Tensor | None = None) -> torch.Tensor:
    """Σₖ pᵢₖ (zₖ − cᵢₖ)² for every row of z (B, d) and centroid cᵢ (N, d), (B, N); pᵢₖ = 1 without ``precisions``.

    Expanded into matrix products, Σₖ pᵢₖ zₖ² − 2 Σₖ pᵢₖ cᵢₖ zₖ + Σₖ pᵢₖ cᵢₖ², clamped at 0 (the
    expansion can round below it near a centroid): ‖z − cᵢ‖² of Eq. 1.7, or with the posterior
    precisions the weighted distance of the geometric metric (Eq. 3.6).
    """
    if precisions is None:
        squared = ((z * z).sum(-1, keepdim=True) - 2.0 * z @ centroids.transpose(-1, -2)
                   + (centroids * centroids).sum(-1)[..., None, :])
    else:
        squared = ((z * z) @ precisions.T - 2.0 * z @ (precisions * centroids).T
                   + (precisions * centroids * centroids).sum(1)[None])
    return squared.clamp_min(0.0)


def weighted_differences(a: torch.Tensor, z: torch.Tensor, centroids: torch.Tensor,
                         precisions: torch.Tensor | None = None) -> torch.Tensor:
    """Σᵢ aᵢ pᵢ ∘ (z − cᵢ) for coefficients a (B, N), (B, d), as z ∘ (a p) − a (p ∘ C); pᵢ = 1 without ``precisions``.

    The gradient of Σᵢ aᵢ · ½ :func:`squared_distances` at fixed a, without a B×N×d tensor.
    """
    if precisions is None:
        return z * a.sum(-1, keepdim=True) - a @ centroids
    return z * (a @ precisions) - a @ (precisions * centroids)


def metric_weights(z: torch.Tensor, centroids: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """wᵢ(z) = exp(−‖z − cᵢ‖²/T²) of Eq. 1.7, (B, N): the one weights function of the RHVAE metric."""
    return torch.exp(-squared_distances(z, centroids) / temperature**2)


_WeightChunks = Callable[[], Iterable[tuple[slice, torch.Tensor]]]


def _weight_chunks(z: torch.Tensor, centroids: torch.Tensor, temperature: float | torch.Tensor,
                   chunk: int) -> _WeightChunks:
    """A pass over (slice of centroids, their weights wᵢ(z)), ``chunk`` centroids at a time; computed once
    and kept when they fit in one chunk, else recomputed on every pass (B × ``chunk`` memory)."""
    parts = [slice(start, start + chunk) for start in range(0, centroids.shape[-2], chunk)]
    if len(parts) <= 1:
        kept = [(part, metric_weights(z, centroids[..., part, :], temperature)) for part in parts]
        return lambda: kept
    return lambda: ((part, metric_weights(z, centroids[..., part, :], temperature)) for part in parts)


def _flat(outer: torch.Tensor) -> torch.Tensor:
    return outer.flatten(-2)  # vec(Mᵢ), (…, N, d²)


def _summed_inverse(z: torch.Tensor, chunks: Iterable[tuple[slice, torch.Tensor]], outer: torch.Tensor,
                    regularization: float | torch.Tensor) -> torch.Tensor:
    """G⁻¹ = λ I + Σᵢ wᵢ Mᵢ (Eq. 1.7) from weight chunks, one (B, N) × (N, d²) product per chunk."""
    d = z.shape[-1]
    flat = _flat(outer)
    inverse = (regularization * torch.eye(d, dtype=z.dtype, device=z.device)).expand(*z.shape, d)
    for part, weights in chunks:
        inverse = inverse + (weights @ flat[..., part, :]).view(*z.shape, d)
    return inverse


def inverse_metric(z: torch.Tensor, centroids: torch.Tensor, outer: torch.Tensor, temperature: float,
                   regularization: float, chunk: int = CHUNK) -> torch.Tensor:
    """G⁻¹(z) of Eq. 1.7, (B, d, d), from the outer products Mᵢ = Lᵢ Lᵢᵀ (N, d, d)."""
    return _summed_inverse(z, _weight_chunks(z, centroids, temperature, chunk)(), outer, regularization)


def metric_from_cholesky(cholesky: torch.Tensor) -> torch.Tensor:
    """G = (G⁻¹)⁻¹ = K⁻ᵀ K⁻¹ from the Cholesky factor K of G⁻¹ (B, d, d), by one triangular solve
    (faster than ``cholesky_inverse`` for small batched matrices)."""
    identity = torch.eye(cholesky.shape[-1], dtype=cholesky.dtype, device=cholesky.device).expand(cholesky.shape)
    inverse_factor = torch.linalg.solve_triangular(cholesky, identity, upper=False)
    return inverse_factor.transpose(-1, -2) @ inverse_factor


def log_det_inverse_metric(inverse: torch.Tensor) -> torch.Tensor:
    """log det G⁻¹ from its Cholesky factor (G⁻¹ is symmetric positive definite)."""
    return 2.0 * _half_log_det(torch.linalg.cholesky(inverse))


def _half_log_det(cholesky: torch.Tensor) -> torch.Tensor:
    return cholesky.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # ½ log det K Kᵀ


def log_volume_and_gradient(z: torch.Tensor, centroids: torch.Tensor, outer: torch.Tensor,
                            temperature: float | torch.Tensor, regularization: float | torch.Tensor,
                            chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """½ log det G⁻¹(z), the log of the sampling target √det G⁻¹ (Eq. 1.8), and its gradient
    −Σᵢ wᵢ tr(G Mᵢ) (z − cᵢ)/T² (module docstring), (…, B) and (…, B, d); centroids ``chunk`` at a time."""
    flat = _flat(outer)
    chunks = _weight_chunks(z, centroids, temperature, chunk)
    cholesky = torch.linalg.cholesky(_summed_inverse(z, chunks(), outer, regularization))
    metric = metric_from_cholesky(cholesky).flatten(-2)
    gradient = torch.zeros_like(z)
    for part, weights in chunks():
        gradient = gradient - weighted_differences(weights * (metric @ flat[..., part, :].transpose(-1, -2)), z,
                                                   centroids[..., part, :])
    return _half_log_det(cholesky), gradient / temperature**2


def projected_norms(factors: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """‖Lᵢᵀ v‖² = vᵀ Mᵢ v, (B, N)."""
    return torch.einsum("nkl,bk->bnl", factors, v).pow(2).sum(-1)


def quadratic_gradient(z: torch.Tensor, v: torch.Tensor, centroids: torch.Tensor, factors: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    """∇_z ½ vᵀ G⁻¹(z) v = −Σᵢ wᵢ ‖Lᵢᵀ v‖² (z − cᵢ)/T², (B, d) (geodesic shooting, Eq. 2.1)."""
    a = metric_weights(z, centroids, temperature) * projected_norms(factors, v)
    return -weighted_differences(a, z, centroids) / temperature**2


class PositionTerms(NamedTuple):
    """Metric quantities at one batch of positions z, shared by every velocity evaluated there."""

    z: torch.Tensor            # (B, d) the positions
    weights: torch.Tensor      # (B, N) wᵢ(z)
    inverse: torch.Tensor      # (B, d, d) G⁻¹(z)
    trace: torch.Tensor        # (B, N) tr(G(z) Mᵢ)


def position_terms(z: torch.Tensor, centroids: torch.Tensor, outer: torch.Tensor, temperature: float,
                   regularization: float) -> PositionTerms:
    """Everything of the leapfrog's metric gradient that does not depend on the velocity (all centroids at once)."""
    b, d = z.shape
    weights = metric_weights(z, centroids, temperature)
    inverse = _summed_inverse(z, [(slice(None), weights)], outer, regularization)
    trace = metric_from_cholesky(torch.linalg.cholesky(inverse)).reshape(b, d * d) @ _flat(outer).T
    return PositionTerms(z, weights, inverse, trace)


def metric_gradient(terms: PositionTerms, v: torch.Tensor, centroids: torch.Tensor, factors: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """∇_z [½ log det G(z) + ½ vᵀ G⁻¹(z) v] = Σᵢ wᵢ (z − cᵢ)/T² · (tr(G Mᵢ) − ‖Lᵢᵀ v‖²), (B, d): the metric
    part of ∇_z H in the leapfrog (Eq. 1.5), in closed form (module docstring)."""
    a = terms.weights * (terms.trace - projected_norms(factors, v))
    return weighted_differences(a, terms.z, centroids) / temperature**2


@dataclass
class Metric:
    """One metric of Eq. 1.7: centroids cᵢ (N, d), factors Lᵢ (N, d, d), temperature T and λ; Mᵢ = Lᵢ Lᵢᵀ
    is computed once. Its methods are the module functions on these; ``chunk`` bounds the centroids
    per matrix product of G⁻¹ and the log-volume (the leapfrog's :meth:`terms` take them all at once)."""

    centroids: torch.Tensor
    factors: torch.Tensor
    temperature: float
    regularization: float
    chunk: int = CHUNK
    outer: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.centroids, self.factors = at_least_fp32(self.centroids), at_least_fp32(self.factors)
        with torch.autocast(self.factors.device.type, enabled=False):
            self.outer = self.factors @ self.factors.transpose(-1, -2)  # Mᵢ = Lᵢ Lᵢᵀ

    @full_precision
    def weights(self, z: torch.Tensor) -> torch.Tensor:
        """wᵢ(z), (B, N)."""
        return metric_weights(z, self.centroids, self.temperature)

    @full_precision
    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """G⁻¹(z), (B, d, d)."""
        return inverse_metric(z, self.centroids, self.outer, self.temperature, self.regularization, self.chunk)

    @full_precision
    def tensor(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) = (G⁻¹(z))⁻¹, (B, d, d)."""
        return metric_from_cholesky(torch.linalg.cholesky(self.inverse(z)))

    @full_precision
    def log_det_inverse(self, z: torch.Tensor) -> torch.Tensor:
        """log det G⁻¹(z), (B,)."""
        return log_det_inverse_metric(self.inverse(z))

    @full_precision
    def log_volume_and_gradient(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """½ log det G⁻¹(z) (log of the target of Eq. 1.8) and its gradient, (B,) and (B, d)."""
        return log_volume_and_gradient(z, self.centroids, self.outer, self.temperature, self.regularization,
                                       self.chunk)

    @full_precision
    def quadratic_gradient(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """∇_z ½ vᵀ G⁻¹(z) v, (B, d)."""
        return quadratic_gradient(z, v, self.centroids, self.factors, self.temperature)

    @full_precision
    def terms(self, z: torch.Tensor) -> PositionTerms:
        """The leapfrog's velocity-independent metric terms at z."""
        return position_terms(z, self.centroids, self.outer, self.temperature, self.regularization)

    @full_precision
    def gradient(self, terms: PositionTerms, v: torch.Tensor) -> torch.Tensor:
        """∇_z [½ log det G + ½ vᵀ G⁻¹ v] at the positions of ``terms``, (B, d)."""
        return metric_gradient(terms, v, self.centroids, self.factors, self.temperature)


@dataclass
class StackedMetrics:
    """K metrics of Eq. 1.7 (one per class) padded into one stack, for K groups of chains z (K, B, d).

    A class with fewer centroids is padded with copies of its first centroid carrying Mᵢ = 0, which
    add nothing to G⁻¹ or to the gradient, so group k's log-volume is ``metrics[k]``'s up to float
    rounding; T and λ are per class."""

    metrics: list[Metric]
    centroids: torch.Tensor = field(init=False, repr=False)
    outer: torch.Tensor = field(init=False, repr=False)
    temperature: torch.Tensor = field(init=False, repr=False)
    regularization: torch.Tensor = field(init=False, repr=False)
    chunk: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = max(len(metric.centroids) for metric in self.metrics)
        self.centroids = torch.stack([torch.cat([m.centroids, m.centroids[:1].expand(n - len(m.centroids), -1)])
                                      for m in self.metrics])
        self.outer = torch.stack([torch.cat([m.outer, m.outer.new_zeros(n - len(m.outer), *m.outer.shape[1:])])
                                  for m in self.metrics])
        values = {"dtype": self.centroids.dtype, "device": self.centroids.device}
        self.temperature = torch.tensor([m.temperature for m in self.metrics], **values)[:, None, None]
        self.regularization = torch.tensor([m.regularization for m in self.metrics], **values)[:, None, None, None]
        self.chunk = min(metric.chunk for metric in self.metrics)

    @full_precision
    def log_volume_and_gradient(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """½ log det G⁻¹ and its gradient for every group, (K, B) and (K, B, d)."""
        return log_volume_and_gradient(z, self.centroids, self.outer, self.temperature, self.regularization,
                                       self.chunk)


@full_precision
def log_normal_metric(v: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """log N(v; 0, G) = −½ [d log 2π − log det G⁻¹ + vᵀ G⁻¹ v], (B,)."""
    d = v.shape[-1]
    quadratic = torch.einsum("bk,bkl,bl->b", v, inverse, v)
    return -0.5 * (d * math.log(2 * math.pi) - log_det_inverse_metric(inverse) + quadratic)


@full_precision
def sample_velocity(inverse: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """v ~ N(0, G) with G = (G⁻¹)⁻¹: v = L⁻ᵀ e where G⁻¹ = L Lᵀ, e ~ N(0, I)."""
    noise = torch.randn(inverse.shape[:-1], generator=generator, dtype=inverse.dtype, device=inverse.device)
    cholesky = torch.linalg.cholesky(inverse)
    return torch.linalg.solve_triangular(cholesky.transpose(-1, -2), noise[..., None], upper=True)[..., 0]
