"""The RHVAE target of geometry-aware sampling (thesis Eq. 1.8): p(z) ∝ 1_S(z) √det G⁻¹(z).

log p(z) = ½ log det G⁻¹(z) + const, and with G⁻¹ of Eq. 1.7
    ∇ ½ log det G⁻¹(z) = ½ Σⱼ tr(G ∂ⱼG⁻¹) eⱼ = −Σᵢ wᵢ(z) tr(G Mᵢ) (z − cᵢ) / T²,
computed by contractions over centroids in chunks (never a B×N×d×d tensor).
"""

from __future__ import annotations

import torch

from medaug.generative.metric import metric_weights


def log_volume_and_gradient(z: torch.Tensor, centroids: torch.Tensor, outer: torch.Tensor, temperature: float,
                            regularization: float, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """½ log det G⁻¹(z) and its gradient, (B,) and (B, d); centroids processed ``chunk`` at a time."""
    d = z.shape[-1]
    inverse = regularization * torch.eye(d, dtype=z.dtype, device=z.device).expand(len(z), d, d).clone()
    for start in range(0, len(centroids), chunk):
        weights, _ = metric_weights(z, centroids[start:start + chunk], temperature)
        inverse += torch.einsum("bn,nkl->bkl", weights, outer[start:start + chunk])
    cholesky = torch.linalg.cholesky(inverse)
    metric = torch.cholesky_inverse(cholesky)
    gradient = torch.zeros_like(z)
    for start in range(0, len(centroids), chunk):
        weights, difference = metric_weights(z, centroids[start:start + chunk], temperature)
        trace = torch.einsum("bkl,nkl->bn", metric, outer[start:start + chunk])
        gradient -= torch.einsum("bn,bnd->bd", weights * trace, difference)
    return cholesky.diagonal(dim1=-2, dim2=-1).log().sum(-1), gradient / temperature**2
