"""Is a trained generator's posterior informative enough to sample from? (checked before sampling)

A collapsed VAE (for instance one stopped early on a tiny class: 20 images form one batch, so
100 epochs are 100 optimiser steps) has posterior means that hardly vary (no *active units*:
Burda et al. 2016, Cov_x E_q[z_k] > 0.01) and a decoder that ignores z, so every code decodes to
one image. Two measures, on the training images:
    active dimensions = #{k : Var_i μ_k(xᵢ) > 0.01},
    decoded spread    = mean pairwise ‖x̂ᵢ − x̂ⱼ‖ / mean pairwise ‖xᵢ − xⱼ‖  (x̂ = decoded μ(x)).
"""

from __future__ import annotations

import torch

from medaug.compute import INFERENCE_BATCH
from medaug.errors import UninformativeGeneratorError

ACTIVE_VARIANCE, MIN_DECODED_SPREAD = 0.01, 0.1


def _mean_pairwise(flat: torch.Tensor) -> float:
    return float(torch.pdist(flat.double()).mean()) if len(flat) > 1 else 0.0


@torch.no_grad()
def posterior_informativeness(model, data: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> dict:
    """Active latent dimensions, the codes' spread and the decoded spread of ``data`` (N, C, *spatial)."""
    device = next(model.parameters()).device
    means, decoded = [], []
    for part in data.split(batch_size):
        mean = model.encoder(part.to(device))[0]
        means.append(mean.double().cpu())
        decoded.append(model.decode(mean).flatten(1).double().cpu())
    means, decoded = torch.cat(means), torch.cat(decoded)
    variance = means.var(0) if len(means) > 1 else torch.zeros(means.shape[1], dtype=torch.float64)
    real = _mean_pairwise(data.flatten(1).cpu())
    return {"active_dimensions": int((variance > ACTIVE_VARIANCE).sum()), "latent_dim": int(means.shape[1]),
            "code_spread": float(variance.sum().sqrt()),
            "decoded_spread": _mean_pairwise(decoded) / real if real > 0 else 0.0}


def require_informative(stats: dict, sampler: str) -> None:
    """Refuse to sample from a collapsed posterior, with the measured cause and the fix."""
    if stats["active_dimensions"] > 0 and stats["decoded_spread"] >= MIN_DECODED_SPREAD:
        return
    raise UninformativeGeneratorError(
        f"{sampler} sampler: the generator's posterior is uninformative ({stats['active_dimensions']} of "
        f"{stats['latent_dim']} latent dimensions active, decoded training images spread "
        f"{stats['decoded_spread']:.2f} of the real images' spread, < {MIN_DECODED_SPREAD}): every code decodes "
        "to nearly one image. Train the generator longer (more max_steps and patience_steps, selection: train: a small class is one "
        "batch per epoch) or with a lower learning rate, then sample again")
