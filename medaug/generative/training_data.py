"""Images of one diagnosis as tensors for generator training, split at subject level without leakage."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from medaug.data.clinica import read_caps_t1_linear, read_labels
from medaug.data.splits import assert_disjoint, load_split
from medaug.errors import InputDataError
from medaug.io import read_table
from medaug.preprocessing.images import resized_affine
from medaug.provenance import GeneratorProvenance

logger = logging.getLogger(__name__)


def read_image_table(source: str | os.PathLike, labels: str | os.PathLike | None = None) -> pd.DataFrame:
    """A table with participant_id, session_id, diagnosis and path: a cohort / labels TSV with a
    ``path`` column, or a CAPS folder (``t1-linear`` outputs) joined with a labels TSV."""
    source = Path(source)
    if source.is_dir():
        if labels is None:
            raise InputDataError(f"{source} is a folder: give the labels TSV (participant_id, session_id, "
                                 "diagnosis) of its images with --labels")
        return read_caps_t1_linear(source, read_labels(labels))
    if not source.is_file():
        raise InputDataError(f"{source} not found; give a cohort TSV (from `medaug cohort`) or a CAPS folder")
    table = read_table(source, "give a cohort TSV (from `medaug cohort`) or a CAPS folder", na_values=["n/a"],
                       keep_default_na=False)
    missing = [c for c in ("participant_id", "diagnosis", "path") if c not in table]
    if missing:
        raise InputDataError(f"{source} lacks column(s) {', '.join(missing)} (columns: {', '.join(table.columns)})")
    return table


def class_split(table: pd.DataFrame, label: str, split_dir: str | os.PathLike | None = None,
                validation_fraction: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and validation rows of one diagnosis; with a split folder its train / validation
    subjects are used (test subjects never), otherwise a seeded subject-level 80/20 draw."""
    rows = table[table["diagnosis"] == label]
    if rows.empty:
        raise InputDataError(f"no image with diagnosis {label!r} (labels present: "
                             f"{', '.join(sorted(table['diagnosis'].dropna().unique()))})")
    if split_dir is not None:
        subjects, _ = load_split(split_dir)
        groups = {name: set(group["participant_id"]) for name, group in subjects.groupby("split")}
        train = rows[rows["participant_id"].isin(groups.get("train", set()))]
        validation = rows[rows["participant_id"].isin(groups.get("validation", set()))]
        assert_disjoint(train=train, validation=validation, test=sorted(groups.get("test", set())))
    else:
        participants = np.array(sorted(rows["participant_id"].unique()))
        rng = np.random.default_rng(seed)
        n_validation = max(1, round(validation_fraction * len(participants)))
        held_out = set(rng.choice(participants, n_validation, replace=False))
        train, validation = rows[~rows["participant_id"].isin(held_out)], rows[rows["participant_id"].isin(held_out)]
        assert_disjoint(train=train, validation=validation)
    if train.empty or validation.empty:
        raise InputDataError(f"label {label!r}: {len(train)} training and {len(validation)} validation images; "
                             "both are needed (add subjects or change the split)")
    return train, validation


def record_training_data(model_dir: str | os.PathLike, label: str, train_rows: pd.DataFrame,
                         validation_rows: pd.DataFrame, spatial_shape: tuple[int, ...], **extra) -> None:
    """Add the training data's identity to ``model_dir/provenance.json``
    (:class:`~medaug.provenance.GeneratorProvenance`): label, image paths, training-set SHA-256 and
    the image affine that synthetic images are written with; ``extra`` (e.g. ``source``) too."""
    record = GeneratorProvenance.read(model_dir, finished=False).to_dict()
    record.update(label=label, train_images=train_rows["path"].tolist(),
                  train_participants=sorted(train_rows["participant_id"].unique()),
                  validation_images=validation_rows["path"].tolist(),
                  training_set_sha256=fingerprint(train_rows["path"].tolist()),
                  image_affine=resized_affine(train_rows, spatial_shape).tolist(), **extra)
    GeneratorProvenance.from_dict(record).write(model_dir)


def fingerprint(paths: list[str]) -> str:
    """SHA-256 over the bytes of the files, in sorted path order (identifies a training set)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()
