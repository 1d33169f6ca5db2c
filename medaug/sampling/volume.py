"""The RHVAE target of geometry-aware sampling (thesis Eq. 1.8): p(z) ∝ 1_S(z) √det G⁻¹(z).

log p(z) = ½ log det G⁻¹(z) + const, and with G⁻¹ of Eq. 1.7
    ∇ ½ log det G⁻¹(z) = ½ Σⱼ tr(G ∂ⱼG⁻¹) eⱼ = −Σᵢ aᵢ (z − cᵢ) / T²,   aᵢ = wᵢ(z) tr(G Mᵢ),
evaluated with matrix products only: ‖z − cᵢ‖² = ‖z‖² − 2 z·cᵢ + ‖cᵢ‖², Σᵢ aᵢ (z − cᵢ) = z Σᵢ aᵢ − a C,
tr(G Mᵢ) = vec(G) · vec(Mᵢ): no B×N×d or B×N×d×d tensor; centroids in chunks of ``chunk``.
"""

from __future__ import annotations

import torch


def _weights(z: torch.Tensor, centroids: torch.Tensor, temperature: float) -> torch.Tensor:
    squared = (z * z).sum(1, keepdim=True) - 2.0 * z @ centroids.T + (centroids * centroids).sum(1)[None]
    return torch.exp(-squared.clamp_min(0.0) / temperature**2)


def log_volume_and_gradient(z: torch.Tensor, centroids: torch.Tensor, outer: torch.Tensor, temperature: float,
                            regularization: float, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """½ log det G⁻¹(z) and its gradient, (B,) and (B, d)."""
    b, d = z.shape
    flat = outer.reshape(len(outer), d * d)
    parts = range(0, len(centroids), chunk)
    weights = [_weights(z, centroids[s:s + chunk], temperature) for s in parts] if len(centroids) <= chunk else None
    inverse = regularization * torch.eye(d, dtype=z.dtype, device=z.device).expand(b, d, d).clone()
    for index, start in enumerate(parts):
        w = weights[index] if weights else _weights(z, centroids[start:start + chunk], temperature)
        inverse += (w @ flat[start:start + chunk]).view(b, d, d)
    cholesky = torch.linalg.cholesky(inverse)
    # G = L⁻ᵀ L⁻¹ from one triangular solve (faster than cholesky_inverse for small batched matrices)
    identity = torch.eye(d, dtype=z.dtype, device=z.device).expand(b, d, d)
    inverse_factor = torch.linalg.solve_triangular(cholesky, identity, upper=False)
    metric = (inverse_factor.transpose(-1, -2) @ inverse_factor).reshape(b, d * d)
    gradient = torch.zeros_like(z)
    for index, start in enumerate(parts):
        w = weights[index] if weights else _weights(z, centroids[start:start + chunk], temperature)
        a = w * (metric @ flat[start:start + chunk].T)
        gradient -= z * a.sum(1, keepdim=True) - a @ centroids[start:start + chunk]
    return cholesky.diagonal(dim1=-2, dim2=-1).log().sum(-1), gradient / temperature**2
