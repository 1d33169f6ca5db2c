"""Reference imputations for longitudinal benchmarks, vectorized over subjects and visits:
carry the last observation forward, or interpolate linearly (and extrapolate from the last two
observations) between per-visit codes, for example VAE latent means."""

from __future__ import annotations

import torch


def _neighbours(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per slot: last observed index ≤ l (−1 if none), first observed index ≥ l (T if none), and the
    observed index before the previous one (−1 if none), each (N, T)."""
    visits = mask.shape[1]
    slots = torch.arange(visits, device=mask.device).expand_as(mask)
    previous = torch.where(mask, slots, -1).cummax(1).values
    following = torch.where(mask, slots, visits).flip(1).cummin(1).values.flip(1)
    strictly_before = torch.cat([torch.full_like(previous[:, :1], -1), previous[:, :-1]], 1)
    before_previous = torch.gather(strictly_before, 1, previous.clamp(min=0))
    return previous, following, torch.where(previous >= 0, before_previous, -1)


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[i, index[i, l]] → (N, T, ...) (indices clamped into range)."""
    flat = index.clamp(0, values.shape[1] - 1)
    return values[torch.arange(len(values), device=values.device)[:, None], flat]


def carry_forward(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each slot takes the last observed value at or before it (the next one before the first)."""
    previous, following, _ = _neighbours(mask)
    return _take(values, torch.where(previous >= 0, previous, following))


def linear_fill(codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Codes (N, T, d) filled at unobserved slots: linear between the surrounding observations,
    linear extrapolation from the last two after the last one, the first one before it."""
    previous, following, before_previous = _neighbours(mask)
    slots = torch.arange(mask.shape[1], device=mask.device).expand_as(mask).to(codes.dtype)
    z_prev, z_next, z_before = _take(codes, previous), _take(codes, following), _take(codes, before_previous)
    gap = (following - previous).clamp(min=1).to(codes.dtype)
    between = z_prev + ((slots - previous) / gap)[..., None] * (z_next - z_prev)
    step = (previous - before_previous).clamp(min=1).to(codes.dtype)
    after = torch.where((before_previous >= 0)[..., None],
                        z_prev + ((slots - previous) / step)[..., None] * (z_prev - z_before), z_prev)
    filled = torch.where((following < mask.shape[1])[..., None], between, after)
    filled = torch.where((previous < 0)[..., None], z_next, filled)
    return torch.where(mask[..., None], codes, filled)
