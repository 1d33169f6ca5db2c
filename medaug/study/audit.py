"""Memorization audit of synthetic images and paired bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np
import torch


def memorization_audit(synthetic: torch.Tensor, training: torch.Tensor, quantile: float = 0.05) -> dict:
    """Each synthetic image's Euclidean distance to its nearest training image, compared with the
    nearest-neighbour distances among training images (leave-one-out). Reports the fraction of
    synthetic images closer to the training set than the ``quantile`` of those distances."""
    flat_synthetic, flat_training = synthetic.flatten(1).double(), training.flatten(1).double()
    to_training = torch.cdist(flat_synthetic, flat_training).min(1).values
    among = torch.cdist(flat_training, flat_training)
    among.fill_diagonal_(float("inf"))
    reference = among.min(1).values
    threshold = float(torch.quantile(reference, quantile))
    return {"synthetic_nn_distance": to_training.numpy(), "training_nn_distance": reference.numpy(),
            "threshold": threshold, "fraction_below": float((to_training < threshold).double().mean())}


def paired_bootstrap_ci(values: np.ndarray, reference: np.ndarray, *, resamples: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the paired differences values − reference and its percentile bootstrap CI."""
    differences = np.asarray(values, dtype=float) - np.asarray(reference, dtype=float)
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), (resamples, len(differences)))].mean(1)
    tail = 100 * (1 - level) / 2
    return float(differences.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))
