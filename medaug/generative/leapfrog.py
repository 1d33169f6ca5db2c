"""Tempered generalized leapfrog of the RHVAE flow (thesis Eq. 1.5, Alg. 1), computed economically.

One step from (z, v) with step size ε, the implicit equations solved by fixed-point iterations:

    v̄  = v  − ε/2 ∇_z H(z, v̄)
    z' = z  + ε/2 [G⁻¹(z) v̄ + G⁻¹(z') v̄]
    v' = v̄ − ε/2 ∇_z H(z', v̄)

∇_z H = ∇U(z) + ∇_z[½ log det G + ½ vᵀG⁻¹v], with U = −log p(x|z) − log p(z). ∇U does not depend
on v: it is computed once per position (one decoder pass), reused by every fixed-point iteration
and by the first half-step of the next leapfrog; only the closed-form metric term is iterated
(:meth:`medaug.generative.metric.Metric.terms` and :meth:`~medaug.generative.metric.Metric.gradient`).
Tempering multiplies v' by √(β_{k−1}/β_k), with √β_k = ((1 − 1/√β₀) k²/K² + 1/√β₀)⁻¹.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from medaug.generative.metric import Metric, PositionTerms


def tempering_schedule(sqrt_beta_zero: float, steps: int) -> torch.Tensor:
    """√β_k for k = 0 … K (√β_0 given, √β_K = 1)."""
    k = torch.arange(steps + 1, dtype=torch.float64)
    return 1.0 / ((1.0 - 1.0 / sqrt_beta_zero) * k**2 / steps**2 + 1.0 / sqrt_beta_zero)


# potential(z) -> (U(z) per sample (B,), ∇U(z) (B, d)); returning U lets the caller reuse the last pass
Potential = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def leapfrog_step(z: torch.Tensor, v: torch.Tensor, grad_u: torch.Tensor, terms: PositionTerms, metric: Metric,
                  potential: Potential, step_size: float, fixed_point_iterations: int):
    """One generalized leapfrog step; returns z', v', U(z'), ∇U(z') and the metric terms at z'."""
    half = 0.5 * step_size
    v_bar = v
    for _ in range(fixed_point_iterations):
        v_bar = v - half * (grad_u + metric.gradient(terms, v_bar))
    drift = torch.einsum("bkl,bl->bk", terms.inverse, v_bar)
    z_new = z + step_size * drift  # first iterate: G⁻¹(z') ≈ G⁻¹(z)
    for _ in range(fixed_point_iterations):
        z_new = z + half * (drift + torch.einsum("bkl,bl->bk", metric.inverse(z_new), v_bar))
    u_new, grad_u_new = potential(z_new)
    terms_new = metric.terms(z_new)
    v_new = v_bar - half * (grad_u_new + metric.gradient(terms_new, v_bar))
    return z_new, v_new, u_new, grad_u_new, terms_new


def tempered_flow(z: torch.Tensor, v: torch.Tensor, metric: Metric, potential: Potential, *, steps: int,
                  step_size: float, sqrt_beta_zero: float, fixed_point_iterations: int = 3):
    """K tempered leapfrog steps from (z₀, v₀/√β₀); returns z_K, v_K, U(z_K) (one ∇U pass per position)."""
    schedule = tempering_schedule(sqrt_beta_zero, steps).tolist()
    u, grad_u = potential(z)
    terms = metric.terms(z)
    v = v / sqrt_beta_zero
    for k in range(1, steps + 1):
        z, v, u, grad_u, terms = leapfrog_step(z, v, grad_u, terms, metric, potential, step_size,
                                               fixed_point_iterations)
        v = v * (schedule[k - 1] / schedule[k])
    return z, v, u
