"""MONAI datasets over cohort tables: one item per image, with its label and demographics."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence

import pandas as pd
import torch
from monai.data import Dataset, MetaTensor, PersistentDataset
from monai.data.utils import json_hashing
from monai.transforms import Compose, MapTransform

from medaug.data.cohort import load_image
from medaug.errors import InputDataError, MedaugError

ITEM_COLUMNS = ("participant_id", "session_id", "diagnosis", "age", "sex", "site")


def label_codes(diagnoses: Sequence[str]) -> dict[str, int]:
    """Integer class per diagnosis: ``CN`` is 0 when present, the others follow in sorted order."""
    names = sorted(set(diagnoses), key=lambda d: (d != "CN", d))
    return {name: code for code, name in enumerate(names)}


def cohort_records(cohort: pd.DataFrame, labels: Mapping[str, int] | None = None,
                   image_key: str = "image") -> list[dict]:
    """Data dictionaries ``{image: path, label: int, participant_id, …}`` for MONAI datasets."""
    missing = cohort["diagnosis"].isna()
    if missing.any():
        raise InputDataError(f"{cohort.loc[missing, 'participant_id'].iloc[0]} has no diagnosis; "
                             "drop unlabelled rows before building a dataset")
    labels = dict(labels) if labels is not None else label_codes(cohort["diagnosis"].tolist())
    unknown = ~cohort["diagnosis"].isin(list(labels))
    if unknown.any():
        row = cohort[unknown].iloc[0]
        raise InputDataError(f"{row['participant_id']} {row['session_id']}: diagnosis {row['diagnosis']!r} is "
                             f"not among the classes {sorted(labels)}; filter the table or extend the mapping")
    records = []
    for row in cohort.itertuples(index=False):
        item = {c: (None if pd.isna(getattr(row, c, None)) else getattr(row, c)) for c in ITEM_COLUMNS}
        item.update({image_key: str(row.path), "label": labels[row.diagnosis]})
        records.append(item)
    return records


class LoadT1wd(MapTransform):
    """Load 3D images as channel-first RAS ``MetaTensor`` s with the checks of :func:`load_image`.

    Unlike ``LoadImaged``, an empty, corrupt, 4D or non-finite file raises an error naming it.
    """

    def __init__(self, keys: str | Sequence[str] = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            path = str(out[key])
            voxels, affine = load_image(path)
            out[key] = MetaTensor(voxels[None], affine=torch.as_tensor(affine, dtype=torch.float64),
                                  meta={"filename_or_obj": path, "space": "RAS"})
        return out


class ForgetTraced(MapTransform):
    """Clear the invertible-transform trace of ``MetaTensor`` s so cached items load with ``weights_only``."""

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            out[key].applied_operations = []
        return out


class _DomainErrors:
    """Re-raise a medaug error found under MONAI's ``RuntimeError("applying transform …")`` wrappers."""

    def _transform(self, index: int):
        try:
            return super()._transform(index)
        except RuntimeError as error:
            cause = error.__cause__
            while cause is not None and not isinstance(cause, MedaugError):
                cause = cause.__cause__
            if cause is None:
                raise
            raise cause from error


class CohortDataset(_DomainErrors, Dataset):
    """In-memory MONAI dataset whose loading errors name the file (see :func:`cohort_dataset`)."""


class CachedCohortDataset(_DomainErrors, PersistentDataset):
    """Disk-cached MONAI dataset whose loading errors name the file (see :func:`cohort_dataset`)."""


def cohort_dataset(cohort: pd.DataFrame, transform: Callable | Sequence[Callable] | None = None, *,
                   labels: Mapping[str, int] | None = None,
                   cache_dir: str | os.PathLike | None = None) -> Dataset:
    """A MONAI dataset that loads each image (:class:`LoadT1wd`) and then applies ``transform``.

    With ``cache_dir``, a ``PersistentDataset`` keeps transformed items on disk; the cache key
    includes a hash of the transforms (a changed pipeline never reuses a stale cache), affines
    survive the round trip (``track_meta=True``), and items are read back with ``weights_only``
    after their transform trace is cleared (cached items cannot be inverted).
    """
    steps = [LoadT1wd("image")]
    if transform is not None:
        steps += list(transform.transforms if isinstance(transform, Compose) else
                      (transform if isinstance(transform, Sequence) else [transform]))
    records = cohort_records(cohort, labels)
    if cache_dir is None:
        return CohortDataset(records, Compose(steps))
    return CachedCohortDataset(records, Compose(steps + [ForgetTraced("image")]), cache_dir=cache_dir,
                               hash_transform=json_hashing, track_meta=True, weights_only=True)
