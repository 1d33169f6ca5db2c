"""Sequences of rotated digits (scikit-learn's bundled 8×8 digits, no download): the small analogue
of the thesis's rotMNIST (ch. 6) for longitudinal models, with a known smooth evolution."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from sklearn.datasets import load_digits


def rotated_digit_sequences(visits: int = 8, size: int = 16, total_degrees: float = 360.0,
                            limit: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Each digit upsampled to ``size``² and rotated by l × total_degrees / visits at visit l.
    Returns sequences (N, visits, 1, size, size) in [0, 1] and the digit classes (N,)."""
    digits = load_digits()
    images, classes = digits.images[:limit] / 16.0, digits.target[:limit]
    upsampled = ndimage.zoom(images, (1, size / 8, size / 8), order=1)
    frames = [ndimage.rotate(upsampled, step * total_degrees / visits, axes=(1, 2), reshape=False, order=1)
              for step in range(visits)]
    sequences = np.clip(np.stack(frames, 1), 0.0, 1.0)[:, :, None].astype(np.float32)
    return torch.from_numpy(sequences), classes
