"""Study data: cohort → subject-level split → cached ``t1-linear`` → one memory-mapped image
stack per split (``images/<split>.npy`` beside its listing), read batch by batch, never held whole.

With ``data.caps`` the images are Clinica's ``t1-linear`` outputs and the study's preprocessing
is skipped; the cohort table comes from ``data.labels_tsv`` or ``data.bids``. Test subjects contribute their baseline image only (one prediction per subject); with
``data.sessions: all`` training and validation subjects contribute every session. Images that
fail preprocessing or its QC are left out, listed in the log and ``excluded.tsv``, before the
split is drawn, so that the split's counts hold for the images the study uses. Each image set
carries a fingerprint of its listing (paths, sizes, mtimes) for the steps downstream.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from medaug.data.clinica import read_caps_t1_linear, read_labels
from medaug.data.cohort import load_cohort
from medaug.data.selection import baseline_sessions, match_labels, stable_diagnosis
from medaug.data.splits import COHORT_COLUMNS, assert_disjoint, load_split, save_split, split_subjects
from medaug.errors import InputDataError, OutputExistsError
from medaug.data.volumes import VolumeFile, Volumes, write_volume_file
from medaug.preprocessing.images import image_stream
from medaug.io import write_tsv
from medaug.preprocessing.runner import preprocess_cohort
from medaug.run_folder import file_signature, fingerprint
from medaug.study.config import StudyConfig
from medaug.study.simulated import ensure_simulated_cohort

logger = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """Rows (participant_id, session_id, diagnosis, path), images (N, 1, *size) streamed from a
    memory-mapped stack (or any indexable source), label codes (N,), and the fingerprints of the
    image files it was read from: all of them, and per diagnosis (what a class's generator saw)."""

    rows: pd.DataFrame
    images: VolumeFile | Volumes | torch.Tensor
    labels: torch.Tensor
    fingerprint: str = ""
    class_fingerprints: dict[str, str] = field(default_factory=dict)


@dataclass
class StudyData:
    train: ImageSet
    validation: ImageSet
    test: ImageSet
    independent: dict[str, ImageSet]


def _cohort(config: StudyConfig, bids: str | None, labels_tsv: str | None = None) -> pd.DataFrame:
    """The cohort table of a BIDS dataset or of a ClinicaDL labels TSV, restricted to the study's labels."""
    cohort = load_cohort(bids) if labels_tsv is None else read_labels(labels_tsv)
    source = bids if labels_tsv is None else labels_tsv
    cohort = cohort.assign(**{column: pd.NA for column in COHORT_COLUMNS if column not in cohort})  # site, ...
    cohort = cohort.assign(diagnosis=match_labels(cohort["diagnosis"], config.data.labels))
    if config.data.stable_diagnosis:
        cohort = stable_diagnosis(cohort)
    cohort = cohort[cohort["diagnosis"].isin(config.data.labels)]
    if cohort.empty:
        raise InputDataError(f"{source} has no image with diagnosis {' or '.join(config.data.labels)}")
    return cohort.reset_index(drop=True)


def _split(config: StudyConfig, cohort: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """The recorded split when its settings and subjects match the cohort; drawn and saved otherwise."""
    split_dir = run_dir / "split"
    if not (split_dir / "split.json").exists():
        subjects = split_subjects(cohort, config.split)
        save_split(subjects, config.split, split_dir)
        return subjects
    subjects, recorded = load_split(split_dir)
    if recorded != config.split:
        raise OutputExistsError(f"{split_dir} holds a split with other settings; use a new output folder")
    now = cohort.groupby("participant_id")["diagnosis"].first()
    then = subjects.set_index("participant_id")["diagnosis"]
    common = now.index.intersection(then.index)
    changes = {"added": now.index.difference(then.index), "removed": then.index.difference(now.index),
               "with another diagnosis": common[now[common] != then[common]]}
    changed = [f"{len(ids)} subject(s) {what} ({', '.join(ids[:3])}{' …' if len(ids) > 3 else ''})"
               for what, ids in changes.items() if len(ids)]
    if changed:
        raise OutputExistsError(f"the usable cohort changed since {split_dir} was drawn: {'; '.join(changed)}; "
                                "use a new output folder (a new split changes every result) or restore the data")
    return subjects


def _preprocessed(config: StudyConfig, rows: pd.DataFrame, bids: str, caps: Path) -> pd.DataFrame:
    """``rows`` with ``path`` replaced by the preprocessed, resized image; failed / flagged rows dropped."""
    if not config.preprocessing.enabled:
        return rows
    qc = preprocess_cohort(rows, caps, config.t1_linear(), sources=[bids], jobs=config.preprocessing.jobs)
    bad = qc[qc["status"] != "ok"]
    (caps / "excluded.tsv").unlink(missing_ok=True)
    if len(bad):
        write_tsv(caps / "excluded.tsv", bad)
        logger.warning("%d image(s) left out of the study after t1-linear QC (see %s)", len(bad), caps / "excluded.tsv")
    images = read_caps_t1_linear(caps, resolution="x".join(map(str, config.preprocessing.size)))
    keep = qc.loc[qc["status"] == "ok", ["participant_id", "session_id"]]
    images = images.merge(keep, on=["participant_id", "session_id"])
    return rows.drop(columns="path").merge(images[["participant_id", "session_id", "path"]],
                                           on=["participant_id", "session_id"])


def _from_caps(rows: pd.DataFrame, caps: str, excluded: Path) -> pd.DataFrame:
    """``rows`` with ``path`` the Clinica ``t1-linear`` crop image of each (old or current naming);
    :func:`_image_set` resizes and rescales it like the study's own preprocessing does. Images the
    CAPS folder lacks (Clinica failed or skipped them) are left out, listed in ``excluded``."""
    images = read_caps_t1_linear(caps)[["participant_id", "session_id", "path"]]
    rows = rows.drop(columns="path", errors="ignore").merge(images, on=["participant_id", "session_id"], how="left")
    absent = rows[rows["path"].isna()]
    excluded.unlink(missing_ok=True)
    if len(absent):
        write_tsv(excluded, absent[["participant_id", "session_id"]].assign(
            status="missing", reason=f"no t1-linear output in {caps}"))
        logger.warning("%d image(s) of the cohort have no t1-linear output in %s and are left out (see %s)",
                       len(absent), caps, excluded)
    logger.info("%d image(s) read from the CAPS folder %s (the study's preprocessing is skipped)",
                len(rows) - len(absent), caps)
    return rows[rows["path"].notna()].reset_index(drop=True)


def _image_set(config: StudyConfig, rows: pd.DataFrame, stack: Path) -> ImageSet:
    """The split's images in ``stack`` (float32 .npy, rewritten when its listing, which holds each
    file's size and mtime, changes: a replaced image is read again)."""
    rows = rows.sort_values(["participant_id", "session_id"]).reset_index(drop=True)
    codes = {label: i for i, label in enumerate(config.data.labels)}
    listing = stack.with_suffix(".tsv")
    signatures = [file_signature(path) for path in rows["path"]]
    current = rows[["participant_id", "session_id", "diagnosis", "path"]].assign(
        size=[size for size, _ in signatures], mtime_ns=[mtime for _, mtime in signatures]).astype(str)
    if not (stack.exists() and listing.exists()
            and pd.read_csv(listing, sep="\t", dtype=str, keep_default_na=False).equals(current)):
        listing.unlink(missing_ok=True)  # the stack is rewritten: the listing comes back only once it is whole
        size = config.preprocessing.size
        write_volume_file(stack, (image[None] for image in image_stream(rows, size)), (len(rows), 1, *size))
        write_tsv(listing, current)
    return ImageSet(rows, VolumeFile(stack), torch.tensor([codes[d] for d in rows["diagnosis"]], dtype=torch.long),
                    fingerprint(current.to_dict("records")),
                    {label: fingerprint(current[current["diagnosis"] == label].to_dict("records"))
                     for label in config.data.labels})


def prepare_data(config: StudyConfig, run_dir: Path) -> StudyData:
    """Cohort table, preprocessing (cached in ``run_dir/caps``), split of the usable images, image stacks."""
    if config.data.simulate is not None:
        ensure_simulated_cohort(config.data.bids, config.data.simulate, run_dir)
    cohort = _cohort(config, config.data.bids, config.data.labels_tsv)
    write_tsv(run_dir / "cohort.tsv", cohort)
    needed = cohort if config.data.sessions == "all" else baseline_sessions(cohort)
    if config.data.caps is not None:
        usable = _from_caps(needed, config.data.caps, run_dir / "caps" / "excluded.tsv")
    else:
        usable = _preprocessed(config, needed, config.data.bids, run_dir / "caps")
    subjects = _split(config, usable, run_dir)
    groups = {name: set(group["participant_id"]) for name, group in subjects.groupby("split")}
    if config.train_subset == "train_n":
        groups["train"] = set(subjects.loc[subjects["train_n"], "participant_id"])
    assert_disjoint(**{name: sorted(ids) for name, ids in groups.items()})
    baseline = baseline_sessions(usable)
    sets = {}
    for name in ("train", "validation", "test"):
        rows = baseline if name == "test" else usable
        rows = rows[rows["participant_id"].isin(groups.get(name, set()))]
        for label in config.data.labels:
            if not (rows["diagnosis"] == label).any():
                raise InputDataError(f"the {name} split has no usable {label} image; add subjects or lower "
                                     "split.test_per_label")
        sets[name] = _image_set(config, rows, run_dir / "images" / f"{name}.npy")
    assert_disjoint(train=sets["train"].rows, validation=sets["validation"].rows, test=sets["test"].rows)
    independent = {}
    for cohort_spec in config.data.independent_tests:
        if config.data.caps is not None:
            logger.warning("independent test cohort %s is preprocessed by medaug's t1-linear, the study's own images "
                           "by Clinica's (%s): the two pipelines differ slightly", cohort_spec.name, config.data.caps)
        rows = baseline_sessions(_cohort(config, cohort_spec.bids))
        kept = _preprocessed(config, rows, cohort_spec.bids, run_dir / f"caps_{cohort_spec.name}")
        independent[cohort_spec.name] = _image_set(config, kept, run_dir / "images" / f"test_{cohort_spec.name}.npy")
    counts = {name: len(s.rows) for name, s in sets.items()}
    logger.info("study images: %s", json.dumps(counts))
    return StudyData(sets["train"], sets["validation"], sets["test"], independent)
