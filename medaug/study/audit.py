"""Paired bootstrap confidence intervals (the copy audit lives in :mod:`medaug.sampling.quality`)."""

from __future__ import annotations

import numpy as np



def paired_bootstrap_ci(values: np.ndarray, reference: np.ndarray, *, resamples: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the paired differences values − reference and its percentile bootstrap CI."""
    differences = np.asarray(values, dtype=float) - np.asarray(reference, dtype=float)
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), (resamples, len(differences)))].mean(1)
    tail = 100 * (1 - level) / 2
    return float(differences.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))
