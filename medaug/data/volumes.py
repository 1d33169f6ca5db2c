"""Image collections that stream from disk: a study never holds its images in RAM.

A :class:`VolumeFile` is an (N, C, *spatial) stack in a ``.npy`` file, read row by row
(pickled as its path, so Ray or DataLoader workers reopen it instead of copying it).
:class:`Volumes` is a concatenation of row selections of any sources — volume files, in-memory
tensors or :class:`AugmentedVolumes` — and is the ``Dataset`` the classifiers and the
memorization audit read in batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from medaug.compute import INFERENCE_BATCH
from medaug.errors import InputDataError
from medaug.io import atomic_write


class VolumeFile:
    """Read-only (N, C, *spatial) ``.npy`` stack read row by row from the file (``pread``, so the
    pages stay in the OS cache, not in this process); indexing returns float32 tensors."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputDataError(f"image stack {self.path} not found; rerun the step that writes it")
        with self.path.open("rb") as handle:
            try:
                major, _ = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, fortran, self.dtype = read_header(handle)
            except ValueError as error:
                raise InputDataError(f"{self.path} is not a .npy image stack ({error}); delete it and rerun") from None
            self._offset = handle.tell()
        if fortran or len(shape) < 3:
            raise InputDataError(f"{self.path} holds a {'Fortran-ordered ' if fortran else ''}array of shape "
                                 f"{shape}, not a C-ordered (N, C, *spatial) stack; delete it and rerun")
        self.shape = tuple(shape)
        self._row_bytes = int(np.prod(shape[1:])) * self.dtype.itemsize
        self._descriptor: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        rows = index.numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        if np.any((rows < 0) | (rows >= len(self))):
            raise IndexError(f"rows outside 0..{len(self) - 1} of {self.path}")
        if self._descriptor is None:
            self._descriptor = os.open(self.path, os.O_RDONLY)
        images = np.empty((rows.size, *self.shape[1:]), dtype=np.float32)
        for i, row in enumerate(rows.ravel()):
            data = os.pread(self._descriptor, self._row_bytes, self._offset + int(row) * self._row_bytes)
            images[i] = np.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:])
        return torch.from_numpy(images.reshape(*rows.shape, *self.shape[1:]))

    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __del__(self) -> None:
        if getattr(self, "_descriptor", None) is not None:
            os.close(self._descriptor)


def write_volume_file(path: str | os.PathLike, batches: Iterable[torch.Tensor], shape: Sequence[int],
                      dtype: str = "float32") -> VolumeFile:
    """Fill an (N, C, *spatial) ``.npy`` from image batches without holding them all; atomic."""
    def fill(target: Path) -> None:
        array = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=tuple(shape))
        start = 0
        for batch in batches:
            array[start:start + len(batch)] = batch.detach().cpu().numpy()
            start += len(batch)
        if start != shape[0]:
            raise InputDataError(f"{path}: {start} images written, {shape[0]} expected")
        array.flush()
        del array

    atomic_write(Path(path), fill)
    return VolumeFile(path)


AUGMENTED_CACHE_BYTES = 512 * 2**20  # drawn augmented images kept in memory per training set


class AugmentedVolumes:
    """``copies`` randomly transformed versions of every image of ``source``; image k is drawn with
    the seed (seed, k), so it is the same whatever the order, batch or worker that reads it. Drawn
    images are kept in memory up to ``cache_bytes`` (an epoch after the first then reads them
    instead of transforming again: the same images, without the cost)."""

    def __init__(self, source: Volumes, copies: int, seed: int, transform: Callable[[torch.Tensor], torch.Tensor],
                 cache_bytes: int = AUGMENTED_CACHE_BYTES):
        self.source, self.copies, self.seed, self.transform = source, copies, seed, transform
        self.cache_bytes, self._cache, self._cached = cache_bytes, {}, 0

    def __len__(self) -> int:
        return self.copies * len(self.source)

    def _draw(self, k: int) -> torch.Tensor:
        if k in self._cache:
            return self._cache[k]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + k)
            image = self.transform(self.source[k % len(self.source)])
        size = image.element_size() * image.nelement()
        if self._cached + size <= self.cache_bytes:
            self._cache[k], self._cached = image, self._cached + size
        return image

    def __getitem__(self, rows: np.ndarray) -> torch.Tensor:
        return torch.stack([self._draw(int(k)) for k in np.atleast_1d(rows)])


class Volumes(Dataset):
    """Row selections of image sources, concatenated; ``volumes[i]`` is one (C, *spatial) image."""

    def __init__(self, parts: Sequence[tuple[object, np.ndarray]]) -> None:
        self.parts = [(source, np.asarray(rows, dtype=np.int64)) for source, rows in parts]
        self._offsets = np.cumsum([0] + [len(rows) for _, rows in self.parts])

    @classmethod
    def of(cls, source) -> Volumes:
        """All rows of a tensor, a :class:`VolumeFile`, :class:`AugmentedVolumes` or ``Volumes``."""
        if isinstance(source, Volumes):
            return source
        return cls([(source, np.arange(len(source)))])

    @classmethod
    def concat(cls, collections: Iterable) -> Volumes:
        return cls([part for c in collections for part in cls.of(c).parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        first = self[0]
        return (len(self), *first.shape)

    def take(self, rows) -> Volumes:
        """A view on the given rows (indices or a boolean mask) of this collection."""
        rows = np.asarray(rows.numpy() if isinstance(rows, torch.Tensor) else rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows outside 0..{len(self) - 1}")
        part = np.searchsorted(self._offsets, rows, side="right") - 1
        breaks = np.flatnonzero(np.diff(part)) + 1  # runs of one source keep the order given
        return Volumes([(self.parts[p[0]][0], self.parts[p[0]][1][r - self._offsets[p[0]]])
                        for r, p in zip(np.split(rows, breaks), np.split(part, breaks)) if len(r)])

    def batch(self, rows) -> torch.Tensor:
        """Images at ``rows`` (B, C, *spatial), float32, in the order given."""
        return torch.cat([_read(source, local) for source, local in self.take(rows).parts])

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.batch([index])[0]

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), batch_size):
            yield self.batch(np.arange(start, min(start + batch_size, len(self))))

    def load(self) -> torch.Tensor:
        """All images in one tensor (for small collections only)."""
        return torch.cat(list(self.batches(256)))

    def on_device(self, device: torch.device, dtype: torch.dtype = torch.float32,
                  batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
        """All images in one tensor on ``device`` (e.g. GPU memory), filled batch by batch so the
        host never holds more than ``batch_size`` images."""
        resident = torch.empty(self.shape, dtype=dtype, device=device)
        for start, part in zip(range(0, len(self), batch_size), self.batches(batch_size)):
            resident[start:start + len(part)] = part.to(device, dtype)
        return resident


def _read(source, rows: np.ndarray) -> torch.Tensor:
    if isinstance(source, torch.Tensor):
        return source[torch.from_numpy(rows)].float()
    return source[rows]

