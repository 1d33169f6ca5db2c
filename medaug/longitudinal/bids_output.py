"""Longitudinal outputs as a BIDS derivative: one session per grid slot with its age in the
subject's ``sessions.tsv``. Fully synthetic subjects are ``sub-synth<label>NNNN`` with
``desc-synthetic`` images; imputed or extrapolated visits of real subjects keep the subject's
label, use ``desc-imputed`` and are flagged in the sidecar and in ``sessions.tsv``.

Each call's listing (``synthetic_<label>_<first>-<last>_listing.tsv``, ``imputed_listing.tsv``) is
written last and is its commit record: a synthetic subject that no listing names is the leftover
of an interrupted call and is replaced; a listed one is never overwritten."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch

from medaug.data.derivatives import DerivativeDataset
from medaug.io import write_text, write_tsv
from medaug.run_folder import FolderLock, replace_unlisted
from medaug.longitudinal.sequences import VisitGrid, session_label
from medaug.sampling.synthetic_dataset import label_token

DATASET_NAME = "medaug-longitudinal"


def _dataset(out_dir: str | os.PathLike, sources=()) -> DerivativeDataset:
    dataset = DerivativeDataset(out_dir, DATASET_NAME, sources=sources,
                                description="synthetic and imputed longitudinal images from medaug")
    write_text(dataset.root / ".bidsignore", "*_listing.tsv\n")  # listings are not BIDS files
    return dataset


def _write_sessions(dataset: DerivativeDataset, participant: str, sessions: pd.DataFrame) -> None:
    sub = participant.removeprefix("sub-")
    write_tsv(dataset.root / f"sub-{sub}" / f"sub-{sub}_sessions.tsv", sessions)


def write_synthetic_subjects(images: torch.Tensor, baseline_ages: np.ndarray, out_dir: str | os.PathLike, *,
                             label: str, interval_years: float, affine: np.ndarray, provenance: dict,
                             start_index: int = 1) -> pd.DataFrame:
    """Write sequences (N, T, 1, ...) of new subjects; visit l is at baseline age + l × interval."""
    dataset = _dataset(out_dir)
    with FolderLock(dataset.root, "medaug longitudinal generate"):
        return _write_subjects(dataset, images, baseline_ages, label, interval_years, affine, provenance, start_index)


def _write_subjects(dataset: DerivativeDataset, images: torch.Tensor, baseline_ages: np.ndarray, label: str,
                    interval_years: float, affine: np.ndarray, provenance: dict, start_index: int) -> pd.DataFrame:
    token = label_token(label)
    participants = [f"sub-synth{token}{start_index + offset:04d}" for offset in range(len(images))]
    listed = {dataset.root / p for listing in dataset.root.glob("synthetic_*_listing.tsv")
              for p in pd.read_csv(listing, sep="\t", usecols=["participant_id"])["participant_id"]}
    replace_unlisted([dataset.root / p for p in participants], listed, f"a synthetic_*_listing.tsv of {dataset.root}")
    rows = []
    for offset, (participant, sequence) in enumerate(zip(participants, images)):
        sessions = []
        for slot, image in enumerate(sequence):
            session = f"ses-{session_label(slot, interval_years)}"
            age = round(float(baseline_ages[offset]) + slot * interval_years, 2)
            path = dataset.path(participant, session, desc="synthetic")
            dataset.write_image(path, image[0], affine, {
                "Synthetic": True, "Label": label, "Age": age, "Visit": slot, "SubjectIndex": offset, **provenance})
            sessions.append({"session_id": session, "age": age, "synthetic": True})
            rows.append({"participant_id": participant, "session_id": session, "diagnosis": label, "age": age,
                         "synthetic": True, "path": str(path)})
        _write_sessions(dataset, participant, pd.DataFrame(sessions))
    table = pd.DataFrame(rows)
    write_tsv(dataset.root / f"synthetic_{token}_{start_index:04d}-{start_index + len(images) - 1:04d}_listing.tsv",
              table)
    return table


def write_imputed_visits(images: torch.Tensor, grid: VisitGrid, out_dir: str | os.PathLike, *, affine: np.ndarray,
                         provenance: dict, sources=()) -> pd.DataFrame:
    """Write the unobserved slots of each subject (N, T, 1, ...): slots between observed visits are
    ``imputed``, later ones ``extrapolated``; ``sessions.tsv`` lists observed and written sessions."""
    dataset = _dataset(out_dir, sources)
    rows, ages = [], grid.ages()
    for index, participant in enumerate(grid.participants):
        observed = grid.mask[index]
        last = int(observed.nonzero().max())
        real = grid.rows[grid.rows["participant_id"] == participant].set_index("slot")
        sessions = []
        for slot in range(len(observed)):
            age = round(float(ages[index, slot]), 2)
            if observed[slot]:
                sessions.append({"session_id": real.loc[slot, "session_id"], "age": float(real.loc[slot, "age"]),
                                 "imputed": False})
                continue
            kind = "imputed" if slot < last else "extrapolated"
            session = f"ses-{session_label(slot, grid.interval_years)}"
            if session in set(real["session_id"]):
                session = f"ses-V{slot:02d}"  # a real session label that fell on another slot
            path = dataset.path(participant, session, desc="imputed")
            dataset.write_image(path, images[index, slot, 0], affine, {
                "Synthetic": True, "Imputed": True, "Kind": kind, "Age": age, "Visit": slot,
                "ObservedSessions": real["session_id"].tolist(), **provenance},
                sources=real["path"].tolist() if "path" in real else ())
            sessions.append({"session_id": session, "age": age, "imputed": True})
            rows.append({"participant_id": participant, "session_id": session, "age": age, "kind": kind,
                         "path": str(path)})
        if len(sessions) > int(observed.sum()):
            _write_sessions(dataset, participant, pd.DataFrame(sessions).sort_values("age"))
    table = pd.DataFrame(rows, columns=["participant_id", "session_id", "age", "kind", "path"])
    write_tsv(dataset.root / "imputed_listing.tsv", table)
    return table
