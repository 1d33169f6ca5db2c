"""Chain diagnostics: multi-chain effective sample size and split-R̂ (Vehtari et al. 2021, the
estimators of Stan and BDA3 §11.4-11.5), the share of chains that never leave their start basin,
and warnings on acceptance rates that signal a badly scaled sampler.

For a trace (N steps, M chains, d dims): W = mean within-chain variance, B/N = variance of the
chain means, var⁺ = (N − 1)/N · W + B/N, and the lag-t autocorrelation pooled over chains
    ρ̂ₜ = 1 − (W − mean_m γₜ,ₘ) / var⁺   (γₜ,ₘ: autocovariance of chain m at lag t),
summed over Geyer's initial positive, monotone sequence: ESS = M·N / (−1 + 2 Σₖ (ρ̂₂ₖ + ρ̂₂ₖ₊₁)).
Chains that do not move (W = 0) have ρ̂ₜ = 1 at every lag, so their ESS is about M/2, not M·N;
when nothing varies at all (var⁺ = 0) the ESS is 0.
"""

from __future__ import annotations

import numpy as np
import torch

LOW_ACCEPTANCE, HIGH_ACCEPTANCE = 0.05, 0.99


def _autocovariance(trace: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each chain and dimension by FFT, (N, M, d)."""
    steps = len(trace)
    centred = trace - trace.mean(0, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * steps)))
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    return np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[:steps] / steps


def _pooled_variance(trace: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W, var⁺) per dimension of a trace (N, M, d)."""
    steps = len(trace)
    within = trace.var(0, ddof=1).mean(0)
    between = trace.mean(0).var(0, ddof=1) if trace.shape[1] > 1 else np.zeros(trace.shape[2])
    return within, (steps - 1) / steps * within + between


def effective_sample_size(trace: np.ndarray) -> np.ndarray:
    """ESS per dimension of a trace (N steps, M chains, d dims), counted over all chains."""
    trace = np.asarray(trace, dtype=np.float64)
    steps, chains, dims = trace.shape
    if steps < 4:
        raise ValueError(f"the effective sample size needs at least 4 steps per chain, got {steps}")
    within, plus = _pooled_variance(trace)
    mean_autocovariance = _autocovariance(trace).mean(1)  # (N, d)
    ess = np.zeros(dims)
    for k in range(dims):
        if plus[k] <= 0:
            continue  # nothing varies: no information at all
        rho = 1.0 - (within[k] - mean_autocovariance[:, k] * steps / (steps - 1)) / plus[k]
        rho[0] = 1.0
        pairs = rho[: steps - steps % 2].reshape(-1, 2).sum(1)
        positive = np.argmax(pairs <= 0) if (pairs <= 0).any() else len(pairs)
        monotone = np.minimum.accumulate(pairs[:max(positive, 1)])
        tau = -1.0 + 2.0 * monotone.sum()
        ess[k] = chains * steps / max(tau, 1.0 / np.log10(max(chains * steps, 10)))
    return ess


def split_r_hat(trace: np.ndarray) -> np.ndarray:
    """Split-R̂ per dimension: each chain cut in halves, R̂ = √(var⁺ / W) over the 2M half-chains
    (1 when the chains mix, ∞ when they are frozen at different points)."""
    trace = np.asarray(trace, dtype=np.float64)
    half = len(trace) // 2
    if half < 2:
        raise ValueError(f"split-R̂ needs at least 4 steps per chain, got {len(trace)}")
    halves = np.concatenate([trace[:half], trace[half:2 * half]], axis=1)
    within, plus = _pooled_variance(halves)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_hat = np.sqrt(plus / within)
    return np.where(plus <= 0, 1.0, np.where(within <= 0, np.inf, r_hat))


def start_basin_fraction(start: torch.Tensor, final: torch.Tensor, centroids: torch.Tensor) -> float:
    """Fraction of chains whose final state has the same nearest centroid as their start."""
    nearest = lambda z: torch.cdist(z.double(), centroids.double()).argmin(1)  # noqa: E731
    return float((nearest(start) == nearest(final)).double().mean())


def acceptance_warning(rate: float) -> str | None:
    """A warning when the mean acceptance rate shows a badly scaled chain, else None."""
    if rate < LOW_ACCEPTANCE:
        return (f"acceptance rate {rate:.3f} < {LOW_ACCEPTANCE}: the chains barely move and return their "
                "starting codes; adapt the step size (warmup > 0) or lower step_size / sigma")
    if rate > HIGH_ACCEPTANCE:
        return (f"acceptance rate {rate:.3f} > {HIGH_ACCEPTANCE}: the steps are too small to explore; "
                "adapt the step size (warmup > 0) or raise step_size / sigma")
    return None


def chain_diagnostics(result, centroids: torch.Tensor | None = None) -> dict:
    """Acceptance, adapted step size, ESS (mean over dimensions, and per draw), split-R̂ (max over
    dimensions), start-basin fraction and warnings of a :class:`~medaug.sampling.hmc.ChainResult`."""
    rate = float(result.acceptance.mean())
    out = {"acceptance_rate": rate, "acceptance_min": float(result.acceptance.min()),
           "acceptance_max": float(result.acceptance.max())}
    if result.step_size is not None:
        out["step_size"] = float(result.step_size.double().mean())
    if result.trace is not None and len(result.trace) >= 4:
        trace = result.trace.detach().cpu().double().numpy()
        ess = effective_sample_size(trace)
        out.update(effective_sample_size=float(ess.mean()), ess_per_draw=float(ess.mean() / trace[:, :, 0].size),
                   split_r_hat=float(split_r_hat(trace).max()))
    if centroids is not None and result.start is not None:
        out["start_basin_fraction"] = start_basin_fraction(result.start, result.samples, centroids)
    warning = acceptance_warning(rate)
    out["warnings"] = [warning] if warning else []
    return out
