"""Geometric VAE sampling (thesis ch. 3): a metric built from a vanilla VAE's posteriors (Eq. 3.6,
Alg. 4) and HMC on the Riemannian uniform density ∝ √det G(z) (Alg. 5).

With diagonal posterior precisions pᵢ = diag Σ⁻¹(xᵢ) the metric is diagonal:
    G_kk(z) = Σᵢ pᵢₖ ωᵢ(z) + λ e^{−τ‖z‖²},   ωᵢ(z) = exp(−Σₖ pᵢₖ (zₖ − cᵢₖ)² / ρ²),
    log p(z) = ½ Σₖ log G_kk(z) + const,
    ∂ⱼ log p = −(1/ρ²) Σᵢ aᵢ pᵢⱼ (zⱼ − cᵢⱼ) − τ zⱼ λ e^{−τ‖z‖²} Σₖ 1/G_kk,   aᵢ = ωᵢ Σₖ pᵢₖ / G_kk,
all as matrix products over centroids (no B×N×d tensor): the squared distances and Σᵢ aᵢ pᵢ ∘ (z − cᵢ) are
those of the RHVAE metric (:mod:`medaug.generative.metric`) with precisions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medaug.generative.metric import squared_distances, weighted_differences


@dataclass
class GeometricMetric:
    """Centroids cᵢ (N, d), precisions pᵢ (N, d), ρ, λ and τ of Eq. 3.6."""

    centroids: torch.Tensor
    precisions: torch.Tensor
    rho: float
    regularization: float
    tau: float = 0.0

    def _weights_and_floor(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ωᵢ(z) (B, N) and the regulariser λ e^{−τ‖z‖²} (B, 1), from matrix products."""
        weights = torch.exp(-squared_distances(z, self.centroids, self.precisions) / self.rho**2)
        return weights, self.regularization * torch.exp(-self.tau * (z * z).sum(1, keepdim=True))

    def diagonal(self, z: torch.Tensor) -> torch.Tensor:
        """The diagonal of G(z), (B, d)."""
        weights, floor = self._weights_and_floor(z)
        return weights @ self.precisions + floor

    def log_density_and_gradient(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """½ log det G(z) and its gradient, (B,) and (B, d)."""
        p = self.precisions
        weights, floor = self._weights_and_floor(z)
        diagonal = weights @ p + floor
        reciprocal = 1.0 / diagonal
        a = weights * (reciprocal @ p.T)
        gradient = (-weighted_differences(a, z, self.centroids, p) / self.rho**2
                    - self.tau * z * floor * reciprocal.sum(1, keepdim=True))
        return 0.5 * diagonal.log().sum(1), gradient


def medoid_indices(points: np.ndarray, n_centroids: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n_centroids`` k-medoids (FasterPAM, the ``kmedoids`` package) of ``points``."""
    import kmedoids

    if n_centroids >= len(points):
        return np.arange(len(points))
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    return np.sort(kmedoids.fasterpam(distances, n_centroids, random_state=seed).medoids)


def build_geometric_metric(means: torch.Tensor, log_vars: torch.Tensor, n_centroids: int | None = None,
                           regularization: float = 1e-3, tau: float = 0.0, seed: int = 0) -> GeometricMetric:
    """Alg. 4: k-medoids centroids among the posterior means, ρ = maxᵢ minⱼ≠ᵢ ‖cᵢ − cⱼ‖."""
    keep = medoid_indices(means.double().cpu().numpy(), n_centroids or len(means), seed)
    centroids, precisions = means[keep], torch.exp(-log_vars[keep])
    return GeometricMetric(centroids, precisions, max_min_spacing(centroids) or 1.0, regularization, tau)


def max_min_spacing(centroids: torch.Tensor) -> float | None:
    """ρ = maxᵢ minⱼ≠ᵢ ‖cᵢ − cⱼ‖ (thesis Alg. 4), None for fewer than two centroids."""
    if len(centroids) < 2:
        return None
    gaps = torch.cdist(centroids, centroids)
    gaps.fill_diagonal_(float("inf"))
    return float(gaps.min(1).values.max())
