"""Batched Hamiltonian Monte Carlo with identity mass (thesis App. 1.8.2, Eq. 1.9).

All chains advance together; each proposal runs ``leapfrog_steps`` Störmer-Verlet steps and is
accepted with probability min(1, exp(H₀ − H₁)), compared in log space. Proposals leaving the
support (``inside``) are rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# log_density(z) -> (log p(z) up to a constant (B,), ∇ log p(z) (B, d))
LogDensity = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class ChainResult:
    """Final states, the mean acceptance rate of each chain (B,) and, if asked, the states of the
    first chains at every step (steps, chains, d) for diagnostics."""

    samples: torch.Tensor
    acceptance: torch.Tensor
    trace: torch.Tensor | None = None


def hmc(log_density: LogDensity, start: torch.Tensor, *, steps: int, leapfrog_steps: int, step_size: float,
        generator: torch.Generator, inside: Callable[[torch.Tensor], torch.Tensor] | None = None,
        trace_chains: int = 0) -> ChainResult:
    """Run ``steps`` HMC transitions from ``start`` (B, d) for all chains at once."""
    z = start.clone()
    log_p, grad = log_density(z)
    accepted = torch.zeros(len(z), dtype=z.dtype, device=z.device)
    trace = []
    for _ in range(steps):
        v = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        h0 = -log_p + 0.5 * v.pow(2).sum(-1)
        z_new, v_new, log_p_new, grad_new = z, v, log_p, grad
        for _ in range(leapfrog_steps):
            v_new = v_new + 0.5 * step_size * grad_new
            z_new = z_new + step_size * v_new
            log_p_new, grad_new = log_density(z_new)
            v_new = v_new + 0.5 * step_size * grad_new
        h1 = -log_p_new + 0.5 * v_new.pow(2).sum(-1)
        uniform = torch.rand(len(z), generator=generator, dtype=z.dtype, device=z.device)
        accept = torch.log(uniform) < (h0 - h1)
        accept &= torch.isfinite(h1)
        if inside is not None:
            accept &= inside(z_new)
        z = torch.where(accept[:, None], z_new, z)
        log_p = torch.where(accept, log_p_new, log_p)
        grad = torch.where(accept[:, None], grad_new, grad)
        accepted += accept.to(z.dtype)
        if trace_chains:
            trace.append(z[:trace_chains].clone())
    return ChainResult(z, accepted / max(steps, 1), torch.stack(trace) if trace else None)
