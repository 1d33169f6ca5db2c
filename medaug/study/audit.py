"""Memorization audit of synthetic images and paired bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np
import torch

from medaug.data.volumes import Volumes


def nearest_distances(queries, references: torch.Tensor, *, leave_one_out: bool = False, chunk: int = 32,
                      device: str | torch.device = "cpu") -> torch.Tensor:
    """Euclidean distance (float64, on ``device``) from each query image to its nearest reference
    image; queries stream in chunks, so only the references are held. ``leave_one_out``: the
    queries are the references and an image is not its own neighbour."""
    flat = references.flatten(1).to(device, torch.float64)
    nearest = []
    for start, batch in zip(range(0, len(queries), chunk), Volumes.of(queries).batches(chunk)):
        distances = torch.cdist(batch.flatten(1).to(device, torch.float64), flat)
        if leave_one_out:
            distances[torch.arange(len(batch)), torch.arange(start, start + len(batch))] = float("inf")
        nearest.append(distances.min(1).values.cpu())
    return torch.cat(nearest)


def memorization_audit(synthetic, training: torch.Tensor, quantile: float = 0.05,
                       device: str | torch.device = "cpu", training_nn: torch.Tensor | None = None) -> dict:
    """Each synthetic image's Euclidean distance to its nearest training image, compared with the
    nearest-neighbour distances among training images (leave-one-out; ``training_nn`` when already
    computed). Reports the fraction of synthetic images closer to the training set than the
    ``quantile`` of those distances."""
    to_training = nearest_distances(synthetic, training, device=device)
    reference = (training_nn if training_nn is not None
                 else nearest_distances(training, training, leave_one_out=True, device=device))
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
