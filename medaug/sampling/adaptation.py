"""Step-size adaptation by dual averaging (Hoffman & Gelman 2014, NUTS paper §3.2, Alg. 5).

During warm-up step m (1-based), with αₘ the Metropolis acceptance probability and δ the target:
    H̄ₘ = (1 − 1/(m + t₀)) H̄ₘ₋₁ + (δ − αₘ) / (m + t₀)
    log εₘ = μ − √m / γ · H̄ₘ,        μ = log(10 ε₀)
    log ε̄ₘ = m^(−κ) log εₘ + (1 − m^(−κ)) log ε̄ₘ₋₁
Sampling after warm-up uses ε̄. The state is a tensor per chain (B,) or one shared value (1,),
so one step size per class or one per chain follow the same equations.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

GAMMA, T0, KAPPA = 0.05, 10.0, 0.75  # the paper's recommended constants


class DualAveragingState(NamedTuple):
    """Iteration m, running statistic H̄, current log ε and averaged log ε̄ (each (B,) or (1,))."""

    iteration: int
    statistic: torch.Tensor
    log_step: torch.Tensor
    log_step_average: torch.Tensor
    mu: torch.Tensor


def dual_averaging_start(initial_step: torch.Tensor) -> DualAveragingState:
    """The state before warm-up, from the initial step size ε₀ (any positive tensor)."""
    log_step = initial_step.log()
    return DualAveragingState(0, torch.zeros_like(log_step), log_step, torch.zeros_like(log_step),
                              math.log(10.0) + log_step)


def dual_averaging_update(state: DualAveragingState, acceptance: torch.Tensor,
                          target: float) -> DualAveragingState:
    """One update from the acceptance probabilities of the last transition (same shape as the state)."""
    m = state.iteration + 1
    eta = 1.0 / (m + T0)
    statistic = (1.0 - eta) * state.statistic + eta * (target - acceptance)
    log_step = state.mu - math.sqrt(m) / GAMMA * statistic
    weight = m ** (-KAPPA)
    average = weight * log_step + (1.0 - weight) * state.log_step_average
    return DualAveragingState(m, statistic, log_step, average, state.mu)


def adapted_step(state: DualAveragingState) -> torch.Tensor:
    """ε̄ after warm-up (ε₀ when no warm-up step ran)."""
    return (state.log_step_average if state.iteration else state.log_step).exp()
