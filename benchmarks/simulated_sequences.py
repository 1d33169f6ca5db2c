"""Shared by the longitudinal benchmarks: sequences of a simulated example cohort (#3) on a 4 mm
MNI box around the ventricles and medial temporal lobes.

Each image is put in MNI space through the simulation's ground-truth transform (an oracle
registration: the benchmarks measure the longitudinal models, not t1-linear), then divided by its
99th percentile and clipped to [0, 1]."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from medaug.simulation.example_cohort import (
    ExampleCohortConfig, build_example_cohort, read_scanner_to_template, t1w_path)
from medaug.simulation.primitives import resample_to_template

BOX = ((-48.0, 48.0), (-64.0, 32.0), (-28.0, 44.0))  # MNI mm
VOXEL = 4.0
SESSIONS = ("M000", "M012", "M024", "M036")


def template_box() -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of the MNI box at ``VOXEL`` mm."""
    shape = tuple(int((high - low) / VOXEL) + 1 for low, high in BOX)
    affine = np.diag([VOXEL, VOXEL, VOXEL, 1.0])
    affine[:3, 3] = [low for low, _ in BOX]
    return shape, affine


def simulated_images(labels: tuple[str, ...], subjects_per_label: int, *, seed: int, jobs: int,
                     effect: float = 1.0, missing_rate: float = 0.2) -> tuple[pd.DataFrame, torch.Tensor]:
    """The ground-truth table (one row per image, with ages) and the aligned images (N, 1, *box)
    of a yearly M000-M036 cohort with ``missing_rate`` of follow-ups missing."""
    shape, affine = template_box()
    with tempfile.TemporaryDirectory() as work:
        bids = Path(work) / "bids"
        truth = build_example_cohort(bids, ExampleCohortConfig(
            subjects_per_label=subjects_per_label, labels=labels, resolution_mm=VOXEL, sessions=SESSIONS,
            missing_rate=missing_rate, effect=effect, seed=seed), jobs=jobs)
        volumes = []
        for row in truth.itertuples():
            image = nib.load(t1w_path(bids, row.participant_id, row.session_id))
            data = resample_to_template(image, read_scanner_to_template(bids, row.participant_id, row.session_id),
                                        shape, affine)
            volumes.append(np.clip(data / np.percentile(data, 99), 0.0, 1.0))
    return truth, torch.as_tensor(np.stack(volumes), dtype=torch.float32)[:, None]
