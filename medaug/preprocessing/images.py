"""Image files as model inputs: the one place that reads a T1w file into a tensor of a given size in [0, 1].

A file is loaded with the checks of :class:`~medaug.data.dataset.LoadT1wd` (RAS+, float32; a
missing, empty, corrupt, 4D, non-finite or constant (all-zero) file raises an error naming it),
then brought to the
model's size by the last two ``t1-linear`` steps, :func:`~medaug.preprocessing.pipeline.output_transforms`
(trilinear resize, min-max rescaling to [0, 1]). Generator training, ``medaug generate``, study
image stacks and the longitudinal models all read their images here, so they see the same voxels.

``images`` arguments take a table with a ``path`` column (cohort / labels TSV rows) or the paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from monai.data import MetaTensor

from medaug.data.dataset import LoadT1wd
from medaug.errors import InputDataError
from medaug.preprocessing.pipeline import output_transforms

ImageFiles = pd.DataFrame | Iterable[str | os.PathLike]


def _paths(images: ImageFiles) -> list[str]:
    paths = images["path"].tolist() if isinstance(images, pd.DataFrame) else list(images)
    return [str(path) for path in paths]


def _reader(size: Sequence[int] | None):
    load, resize = LoadT1wd("image"), output_transforms(tuple(int(s) for s in size) if size else None)
    return lambda path: resize(load({"image": path}))["image"]


def load_resized(path: str | os.PathLike, size: Sequence[int] | None) -> MetaTensor:
    """One image (1, *size), float32 in [0, 1], with the RAS affine of the resized grid
    (``size`` None: the file's own grid, only min-max rescaled)."""
    return _reader(size)(str(path))


def image_stream(images: ImageFiles, size: Sequence[int] | None) -> Iterator[torch.Tensor]:
    """The images (1, *size) one at a time, read as they are needed (plain float32 tensors)."""
    read = _reader(size)
    return (read(path).as_tensor().float() for path in _paths(images))


def image_tensor(images: ImageFiles, size: Sequence[int] | None) -> torch.Tensor:
    """All images stacked, (N, 1, *size), float32 in [0, 1]."""
    paths = _paths(images)
    if not paths:
        raise InputDataError("no image to load: the table or list of image paths is empty")
    return torch.stack(list(image_stream(paths, size)))


def resized_affine(images: ImageFiles, size: Sequence[int] | None) -> np.ndarray:
    """The RAS affine (4×4, float64) of the first image after resizing; synthetic images are
    written with it."""
    paths = _paths(images)
    if not paths:
        raise InputDataError("no image to take the affine from: the table or list of image paths is empty")
    return _reader(size)(paths[0]).affine.numpy()
