"""Study data: cohort → subject-level split → cached ``t1-linear`` → one memory-mapped image
stack per split (``images/<split>.npy`` beside its listing), read batch by batch, never held whole.

Test subjects contribute their baseline image only (one prediction per subject); with
``data.sessions: all`` training and validation subjects contribute every session. Images that
fail preprocessing or its QC are left out and listed in the log and ``excluded.tsv``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from medaug.data.clinica import read_caps_t1_linear
from medaug.data.cohort import load_cohort
from medaug.data.selection import baseline_sessions, stable_diagnosis
from medaug.data.splits import assert_disjoint, load_split, save_split, split_subjects
from medaug.errors import InputDataError, OutputExistsError
from medaug.data.volumes import VolumeFile, Volumes, write_volume_file
from medaug.preprocessing.images import image_stream
from medaug.io import write_tsv
from medaug.preprocessing.runner import preprocess_cohort
from medaug.study.config import StudyConfig

logger = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """Rows (participant_id, session_id, diagnosis, path), images (N, 1, *size) streamed from a
    memory-mapped stack (or any indexable source), label codes (N,)."""

    rows: pd.DataFrame
    images: VolumeFile | Volumes | torch.Tensor
    labels: torch.Tensor


@dataclass
class StudyData:
    train: ImageSet
    validation: ImageSet
    test: ImageSet
    independent: dict[str, ImageSet]


def _cohort(config: StudyConfig, bids: str) -> pd.DataFrame:
    cohort = load_cohort(bids)
    if config.data.stable_diagnosis:
        cohort = stable_diagnosis(cohort)
    cohort = cohort[cohort["diagnosis"].isin(config.data.labels)]
    if cohort.empty:
        raise InputDataError(f"{bids} has no image with diagnosis {' or '.join(config.data.labels)}")
    return cohort.reset_index(drop=True)


def _split(config: StudyConfig, cohort: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    split_dir = run_dir / "split"
    if (split_dir / "split.json").exists():
        subjects, recorded = load_split(split_dir)
        if recorded != config.split:
            raise OutputExistsError(f"{split_dir} holds a split with other settings; use a new output folder")
        return subjects
    subjects = split_subjects(cohort, config.split)
    save_split(subjects, config.split, split_dir)
    return subjects


def _preprocessed(config: StudyConfig, rows: pd.DataFrame, bids: str, caps: Path) -> pd.DataFrame:
    """``rows`` with ``path`` replaced by the preprocessed, resized image; failed / flagged rows dropped."""
    if not config.preprocessing.enabled:
        return rows
    t1_linear = config.preprocessing.t1_linear()
    qc = preprocess_cohort(rows, caps, t1_linear, sources=[bids], jobs=config.preprocessing.jobs)
    bad = qc[qc["status"] != "ok"]
    if len(bad):
        write_tsv(caps / "excluded.tsv", bad)
        logger.warning("%d image(s) left out of the study after t1-linear QC (see %s)", len(bad), caps / "excluded.tsv")
    images = read_caps_t1_linear(caps, resolution="x".join(map(str, config.preprocessing.size)))
    keep = qc.loc[qc["status"] == "ok", ["participant_id", "session_id"]]
    images = images.merge(keep, on=["participant_id", "session_id"])
    return rows.drop(columns="path").merge(images[["participant_id", "session_id", "path"]],
                                           on=["participant_id", "session_id"])


def _image_set(config: StudyConfig, rows: pd.DataFrame, stack: Path) -> ImageSet:
    """The split's images in ``stack`` (float32 .npy, rewritten when its listing changes)."""
    rows = rows.sort_values(["participant_id", "session_id"]).reset_index(drop=True)
    codes = {label: i for i, label in enumerate(config.data.labels)}
    listing = stack.with_suffix(".tsv")
    columns = ["participant_id", "session_id", "path"]
    current = rows[columns].astype(str)
    if not (stack.exists() and listing.exists()
            and pd.read_csv(listing, sep="\t", dtype=str, keep_default_na=False).equals(current)):
        size = config.preprocessing.size
        write_volume_file(stack, (image[None] for image in image_stream(rows, size)), (len(rows), 1, *size))
        write_tsv(listing, current)
    return ImageSet(rows, VolumeFile(stack), torch.tensor([codes[d] for d in rows["diagnosis"]], dtype=torch.long))


def prepare_data(config: StudyConfig, run_dir: Path) -> StudyData:
    """Cohort table, split, preprocessing (cached in ``run_dir/caps``) and the image tensors."""
    cohort = _cohort(config, config.data.bids)
    write_tsv(run_dir / "cohort.tsv", cohort)
    subjects = _split(config, cohort, run_dir)
    groups = {name: set(group["participant_id"]) for name, group in subjects.groupby("split")}
    if config.train_subset == "train_n":
        groups["train"] = set(subjects.loc[subjects["train_n"], "participant_id"])
    assert_disjoint(**{name: sorted(ids) for name, ids in groups.items()})
    baseline = baseline_sessions(cohort)
    development = cohort if config.data.sessions == "all" else baseline
    selected = {name: (baseline if name == "test" else development) for name in ("train", "validation", "test")}
    selected = {name: rows[rows["participant_id"].isin(groups.get(name, set()))] for name, rows in selected.items()}
    needed = pd.concat(selected.values())
    processed = _preprocessed(config, needed, config.data.bids, run_dir / "caps")
    sets = {}
    for name, rows in selected.items():
        kept = processed.merge(rows[["participant_id", "session_id"]], on=["participant_id", "session_id"])
        for label in config.data.labels:
            if not (kept["diagnosis"] == label).any():
                raise InputDataError(f"the {name} split has no usable {label} image; add subjects or lower "
                                     "split.test_per_label")
        sets[name] = _image_set(config, kept, run_dir / "images" / f"{name}.npy")
    assert_disjoint(train=sets["train"].rows, validation=sets["validation"].rows, test=sets["test"].rows)
    independent = {}
    for cohort_spec in config.data.independent_tests:
        rows = baseline_sessions(_cohort(config, cohort_spec.bids))
        kept = _preprocessed(config, rows, cohort_spec.bids, run_dir / f"caps_{cohort_spec.name}")
        independent[cohort_spec.name] = _image_set(config, kept, run_dir / "images" / f"test_{cohort_spec.name}.npy")
    counts = {name: len(s.rows) for name, s in sets.items()}
    logger.info("study images: %s", json.dumps(counts))
    return StudyData(sets["train"], sets["validation"], sets["test"], independent)
