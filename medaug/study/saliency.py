"""Where a study's CNN looks (``medaug interpret``): MONAI's ``VanillaGrad`` (``gradient``: the
magnitude of the positive-class logit's gradient per voxel), ``GradCAM`` or
``OcclusionSensitivity`` on the test subjects, for the positive class (AD: the evidence for the disease).

Measured on the demo study (real-only CNN, 5 runs, 15 AD test subjects, 24×30×24 images), as the
probability that a voxel of the simulated effect region (ventricles, medial temporal lobes) has a
higher AD class-mean saliency than a voxel of the rest of the brain (0.5: no localisation; the
AD − CN mean image difference scores 0.77), trained against the same networks before training:
``gradient`` 0.81 vs 0.61, ``occlusion`` 0.76 vs 0.56 (38 s for 75 maps), ``gradcam`` 0.54 vs 0.44:
at the layer :func:`cam_layer` picks (6×7×6 voxels) its maps do not resolve a 60-voxel region.
``gradient`` is the default (``python benchmarks/saliency_localisation.py STUDY_DIR``).

Per condition, each test subject's map is the mean over the condition's runs (every saved model);
class-mean maps average the subjects of each true label. Outputs, in
``interpret/<classifier>/<condition>/<method>/``: ``sub-X_ses-Y_desc-<method>_saliency.nii.gz``
per subject and ``label-<L>_desc-<method>_saliency.nii.gz`` per label, on the study's image grid
in template space (the affine of its preprocessed images), and ``overlay.png`` (the class means
over the registration template, three orthogonal slices through the maps' maximum).

Grad-CAM is taken at the deepest convolution block whose output keeps at least ``MIN_CAM_VOXELS``
voxels along every axis (the last block of a small input is 1-3 voxels wide: its map would be a
blur); each map is min-max normalised per subject (MONAI's default). Occlusion saliency is the
drop in the positive-class probability when a cube of about a sixth of the image is replaced by
the same cube of a reference image (the mean training image: the population's anatomy), cubes
tiling the image without overlap (MONAI's default overlap of 0.6 costs 15× more forward passes).
A flat replacement (MONAI's ``mean_img``) is out of distribution: on the demo study it lowered
p(AD) by about 0.1 wherever the cube went, outside the head too, and the map showed nothing else.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from pathlib import Path
from typing import Literal

import matplotlib
import nibabel as nib
import numpy as np
import pandas as pd
import torch
from torch import nn

from medaug.data.volumes import Volumes
from medaug.io import atomic_write, write_nifti
from medaug.study.html_report import png_bytes
from medaug.study.saved_classifiers import SavedClassifier

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

logger = logging.getLogger(__name__)
METHODS = ("gradient", "gradcam", "occlusion")
MIN_CAM_VOXELS = 4
OCCLUDED = -1.0e4  # marks occluded voxels (model inputs are in [0, 1])
INTERPRET_DIR = "interpret"
OVERLAY_FILE = "overlay.png"
BATCH = 32  # test images in memory at a time
Method = Literal["gradient", "gradcam", "occlusion"]


def cam_layer(network: nn.Module, input_shape: tuple[int, ...]) -> str:
    """Name of the ReLU of the deepest conv block whose output has ≥ ``MIN_CAM_VOXELS`` voxels per axis."""
    blocks = [name for name, module in network.features.named_children() if isinstance(module, nn.ReLU)]
    size, chosen = min(input_shape[1:]), blocks[0]
    for name in blocks:  # block b's ReLU sees the input halved b times
        if size < MIN_CAM_VOXELS:
            break
        chosen, size = name, size // 2
    return f"features.{chosen}"


class _Reinsert(nn.Module):
    """``network`` on images whose voxels equal ``OCCLUDED`` are replaced by the reference image's:
    MONAI occludes with that constant, so each cube shows the reference anatomy instead."""

    def __init__(self, network: nn.Module, reference: torch.Tensor) -> None:
        super().__init__()
        self.network, self.reference = network, reference

    def forward(self, x):
        return self.network(torch.where(x == OCCLUDED, self.reference, x))


def saliency(network: nn.Module, images: torch.Tensor, target: int, method: Method,
             reference: torch.Tensor | None = None) -> np.ndarray:
    """Saliency maps (N, *spatial): |∂ logit / ∂ voxel| of ``target`` (gradient), Grad-CAM of its
    logit, or the drop of its probability under occlusion (each cube replaced by ``reference``
    (1, *spatial), by default the image's mean)."""
    from monai.visualize import GradCAM, OcclusionSensitivity, VanillaGrad

    network = network.eval()
    device = next(itertools.chain(network.parameters(), network.buffers()), torch.empty(0)).device
    images = images.to(device).float()
    if method == "gradient":
        gradient = VanillaGrad(network)
        return np.stack([gradient(image[None], index=target)[0, 0].abs().detach().cpu().numpy() for image in images])
    if method == "gradcam":
        cam = GradCAM(network, target_layers=cam_layer(network, tuple(images.shape[1:])))
        return np.stack([cam(image[None], class_idx=target)[0, 0].detach().cpu().numpy() for image in images])
    maps = []
    mask = max(2, min(images.shape[2:]) // 6)
    model = network if reference is None else _Reinsert(network, reference.to(device).float()[None])
    # activate=False: MONAI's own activation is a sigmoid for one-channel *inputs*, not a softmax over classes
    occlusion = OcclusionSensitivity(model, mask_size=mask, n_batch=64, overlap=0.0, verbose=False, activate=False,
                                     mode="mean_img" if reference is None else OCCLUDED)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using a non-tuple sequence", UserWarning)  # inside MONAI, harmless
        for image in images:
            x = image[None]
            full = torch.softmax(network(x), dim=1)[0, target]
            logits, _ = occlusion(x)  # (1, classes, *spatial): the logits with each voxel's cube occluded
            maps.append((full - torch.softmax(logits[0].as_tensor(), dim=0)[target]).cpu().numpy())
    return np.stack(maps)


def _overlay_figure(background: np.ndarray, means: dict[str, np.ndarray], title: str):
    """Class-mean maps over ``background``: one row per label, axial / coronal / sagittal slices
    through the voxel of the largest value over all maps."""
    peak = np.unravel_index(np.argmax(np.stack(list(means.values())).max(0)), background.shape)
    top = max(max(float(np.max(m)) for m in means.values()), 1e-12)  # drawn: positive values over a quarter of it
    figure, axes = plt.subplots(len(means), 3, figsize=(7.5, 2.6 * len(means)), squeeze=False)
    views = (("axial", lambda v: v[:, :, peak[2]].T), ("coronal", lambda v: v[:, peak[1], :].T),
             ("sagittal", lambda v: v[peak[0], :, :].T))
    for row, (label, mean) in enumerate(means.items()):
        for column, (view, cut) in enumerate(views):
            axis = axes[row, column]
            axis.imshow(cut(background), cmap="gray", origin="lower")
            shown = axis.imshow(np.ma.masked_less_equal(cut(mean), 0.25 * top), cmap="hot", alpha=0.6,
                                origin="lower", vmin=0, vmax=top)
            axis.set_title(f"{label} mean · {view}", fontsize=8)
            axis.axis("off")
    figure.colorbar(shown, ax=axes, shrink=0.7, label="saliency")
    figure.suptitle(title, fontsize=9)
    return figure


def interpret_condition(models: list[SavedClassifier], images: Volumes, rows: pd.DataFrame, affine: np.ndarray,
                        background: np.ndarray, out: Path, method: Method, reference: torch.Tensor | None = None,
                        device: str = "cpu") -> dict[str, np.ndarray]:
    """Write the per-subject and class-mean maps of one condition (mean over ``models``; occlusion
    by ``reference``) and the overlay, reading ``images`` ``BATCH`` at a time; returns the class
    means (label → map)."""
    provenance = models[0].provenance
    target = provenance.labels.index(provenance.positive)
    networks = [model.network(device) for model in models]
    records = rows.to_dict("records")
    sums = {label: np.zeros(images.shape[2:]) for label in provenance.labels}
    for start, batch in zip(range(0, len(images), BATCH), images.batches(BATCH)):
        maps = np.mean([saliency(network, batch, target, method, reference) for network in networks], axis=0)
        for row, subject_map in zip(records[start:start + BATCH], maps):
            session = "" if row["session_id"] in ("n/a", "", None) else f"_{row['session_id']}"
            write_nifti(out / f"{row['participant_id']}{session}_desc-{method}_saliency.nii.gz",
                        nib.Nifti1Image(subject_map.astype(np.float32), affine))
            if row["diagnosis"] in sums:
                sums[row["diagnosis"]] += subject_map
    counts = rows["diagnosis"].value_counts()
    means = {label: total / counts[label] for label, total in sums.items() if counts.get(label, 0)}
    for label, mean in means.items():
        write_nifti(out / f"label-{label}_desc-{method}_saliency.nii.gz", nib.Nifti1Image(mean.astype(np.float32), affine))
    title = (f"{provenance.classifier} · {provenance.condition} · {method} saliency for {provenance.positive}, "
             f"mean over {len(models)} run(s) and the test subjects of each label")
    png = png_bytes(_overlay_figure(background, means, title))
    atomic_write(out / OVERLAY_FILE, lambda path: path.write_bytes(png))
    logger.info("%s saliency of %s written to %s", method, provenance.condition, out)
    return means


def region_auc(saliency_map: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> float:
    """P(saliency of a voxel of ``inside`` > that of a voxel of ``outside``) (+ ½ P(tie)): 0.5 when
    the map does not single the region out, 1 when every region voxel ranks above the rest."""
    from scipy.stats import mannwhitneyu

    a, b = saliency_map[inside], saliency_map[outside]
    return float(mannwhitneyu(a, b).statistic / (a.size * b.size))
