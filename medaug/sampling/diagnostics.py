"""Chain diagnostics: effective sample size from autocorrelations (Geyer's initial positive sequence)."""

from __future__ import annotations

import numpy as np


def effective_sample_size(trace: np.ndarray) -> np.ndarray:
    """ESS per dimension of a trace (T steps, C chains, d dims), summed over chains.

    ESS = C·T / (1 + 2 Σₖ ρₖ), the sum over lags k stopping at the first negative pair
    ρ₂ₘ₊₁ + ρ₂ₘ₊₂ < 0; autocorrelations by FFT, averaged over chains.
    """
    steps, chains, dims = trace.shape
    centred = trace - trace.mean(0, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * steps)))
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    autocovariance = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[:steps] / steps
    rho = (autocovariance / np.maximum(autocovariance[:1], 1e-300)).mean(1)  # (T, d)
    ess = np.empty(dims)
    for d in range(dims):
        total = 0.0
        for m in range(0, steps - 2, 2):
            pair = rho[m + 1, d] + rho[m + 2, d]
            if pair < 0:
                break
            total += pair
        ess[d] = chains * steps / (1.0 + 2.0 * total) if total > -0.5 else chains * steps
    return ess
