"""PNG figure of a simulated cohort: CN and AD subjects, baseline and last visit, in template space."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from medaug.io import atomic_write  # noqa: E402
from medaug.simulation.example_cohort import read_ground_truth, read_scanner_to_template, t1w_path  # noqa: E402
from medaug.simulation.primitives import resample_to_template  # noqa: E402

# Coronal plane through the hippocampi and axial plane through the lateral ventricles (MNI mm).
_PLANES = {"coronal y=-22": (1, -22.0), "axial z=+16": (2, 16.0)}
_EXTENT = ((-90.0, 90.0), (-125.0, 90.0), (-75.0, 100.0))


def _slice(bids_dir: Path, participant: str, session: str, axis: int, position: float) -> np.ndarray:
    """One template-space slice (1 mm) of a simulated scan, resampled through its ground truth."""
    shape = [int(high - low) + 1 for low, high in _EXTENT]
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [low for low, _ in _EXTENT]
    affine[axis, 3] = position
    shape[axis] = 1
    image = nib.load(t1w_path(bids_dir, participant, session))
    transform = read_scanner_to_template(bids_dir, participant, session)
    plane = resample_to_template(image, transform, tuple(shape), affine)
    return np.rot90(np.take(plane, 0, axis=axis))


def plot_example_subjects(bids_dir: str | os.PathLike, png_path: str | os.PathLike, per_label: int = 2) -> Path:
    """Save a grid: one row per subject (first subjects of each label with the most sessions),
    columns = planes × (baseline, last visit)."""
    bids_dir = Path(bids_dir)
    truth = read_ground_truth(bids_dir)
    counts = truth.groupby("participant_id")["session_id"].transform("count")
    truth = truth.assign(n_sessions=counts)
    rows = []
    for label, group in truth.groupby("diagnosis", sort=False):
        best = group[group["n_sessions"] == group["n_sessions"].max()]
        for participant in best["participant_id"].unique()[:per_label]:
            sessions = group[group["participant_id"] == participant].sort_values("age")
            rows.append((label, participant, sessions.iloc[0], sessions.iloc[-1]))
    columns = [(plane, which) for plane in _PLANES for which in ("baseline", "last")]
    figure, axes = plt.subplots(len(rows), len(columns), figsize=(3 * len(columns), 3.2 * len(rows)),
                                squeeze=False)
    for r, (label, participant, first, last) in enumerate(rows):
        for c, (plane, which) in enumerate(columns):
            visit = first if which == "baseline" else last
            axis, position = _PLANES[plane]
            ax = axes[r, c]
            ax.imshow(_slice(bids_dir, participant, visit["session_id"], axis, position), cmap="gray")
            ax.set_title(f"{label} {participant}\n{visit['session_id']} age {visit['age']:.1f}, {plane}",
                         fontsize=8)
            ax.text(0.02, 0.02, f"ventricles {visit['ventricle_volume_ml']:.1f} mL", color="yellow",
                    fontsize=7, transform=ax.transAxes)
            ax.axis("off")
    figure.suptitle("medaug simulated cohort (SIMULATED images, resampled to MNI space)", fontsize=10)
    figure.tight_layout()
    path = atomic_write(png_path, lambda p: figure.savefig(p, dpi=90, format="png"))
    plt.close(figure)
    return path
