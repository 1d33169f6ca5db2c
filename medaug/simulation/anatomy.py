"""Reference anatomy for simulated cohorts: the MNI152 2009 templates shipped with nilearn.

nilearn ships the skull-stripped ICBM152 2009a asymmetric T1 template with grey-matter,
white-matter and brain masks at 1 mm (197×233×189, no download). From them this module derives,
once per process, everything the cohort simulator samples:

* a *head* image: the brain plus synthetic CSF / skull / scalp shells, so that simulated scans
  look like unprocessed T1w acquisitions (preprocessing has something to remove);
* a lateral-ventricle mask (dark CSF inside the brain, near the midline);
* the grey-matter probability map, used for medial-temporal atrophy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

TEMPLATE_SPACE = "MNI152NLin2009aAsym"
"""BIDS ``space-`` label of the nilearn template (ICBM152 2009a, asymmetric)."""

PAD_MM = 16
"""Margin added around the template grid to host the synthetic skull and scalp."""

# Shells outside the brain: (outer distance from the brain mask in mm, T1w intensity on the
# template's [0, 1] scale, where white matter is about 0.86, grey matter 0.65 and CSF 0.27).
HEAD_SHELLS = ((3.0, 0.25), (9.0, 0.06), (15.0, 0.75))

# Lateral ventricles: dark, non-GM, non-WM voxels inside this MNI box (mm).
_VENTRICLE_BOX = ((-30.0, 30.0), (-50.0, 30.0), (-10.0, 35.0))
_VENTRICLE_MAX_INTENSITY = 0.4

# Medial temporal lobe (hippocampus + amygdala) as Gaussian blobs in MNI mm: centres, widths.
MTL_CENTRES = np.array([[-26.0, -22.0, -14.0], [26.0, -22.0, -14.0]])
MTL_SIGMAS = np.array([7.0, 12.0, 7.0])


@dataclass(frozen=True)
class TemplateAnatomy:
    """Template volumes on one padded 1 mm grid (arrays indexed ``[i, j, k]``, RAS+ axes)."""

    sampled: torch.Tensor  # (5, X, Y, Z): head, ventricles, gm·w, gm·[w>½], gm·w·[w>½]
    brain_mask: np.ndarray  # bool
    affine: np.ndarray  # voxel -> MNI mm, 4×4
    csf_intensity: float  # mean head intensity inside the ventricles
    grey_matter_intensity: float  # mean head intensity where GM probability > 0.7
    ventricle_centre: np.ndarray  # centroid of the ventricle mask, MNI mm
    ventricle_spread: np.ndarray  # per-axis standard deviation of the ventricle mask, mm

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.brain_mask.shape)

    @property
    def head(self) -> np.ndarray:
        """T1w intensity in [0, 1]: brain plus synthetic head shells."""
        return self.sampled[0].numpy()


def world_coordinates(shape: tuple[int, ...], affine: np.ndarray) -> list[np.ndarray]:
    """World coordinates (x, y, z) of every voxel of an axis-aligned grid, three arrays."""
    axes = [affine[d, d] * np.arange(n) + affine[d, 3] for d, n in enumerate(shape)]
    return np.meshgrid(*axes, indexing="ij")


def gaussian_blobs(coords: list[np.ndarray], centres: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """max over blobs i of exp(−½‖(p − cᵢ)/σ‖²) at every voxel, in [0, 1]."""
    squared = [sum(((x - c) / s) ** 2 for x, c, s in zip(coords, centre, sigma)) for centre in centres]
    return np.exp(-0.5 * np.minimum.reduce(squared)).astype(np.float32)


def _load(loader) -> tuple[np.ndarray, np.ndarray]:
    image = loader(resolution=1)
    return np.asarray(image.get_fdata(dtype=np.float32)), image.affine


def _pad(volume: np.ndarray) -> np.ndarray:
    return np.pad(volume, PAD_MM, mode="constant")


def _ventricle_mask(head, grey, white, brain, coords) -> np.ndarray:
    in_box = np.ones(head.shape, bool)
    for axis_coords, (low, high) in zip(coords, _VENTRICLE_BOX):
        in_box &= (axis_coords > low) & (axis_coords < high)
    candidates = brain & in_box & (grey < 0.3) & (white < 0.3) & (head < _VENTRICLE_MAX_INTENSITY)
    labels, count = ndimage.label(candidates)
    if count < 2:
        raise RuntimeError("could not find the lateral ventricles in the MNI152 template")
    sizes = ndimage.sum(candidates, labels, index=np.arange(1, count + 1))
    largest_two = np.argsort(sizes)[::-1][:2] + 1
    return np.isin(labels, largest_two)


def _head_shells(brain: np.ndarray) -> np.ndarray:
    """Piecewise-constant CSF / skull / scalp shells by distance to the brain, smoothed 1 mm."""
    distance = ndimage.distance_transform_edt(~brain)
    shells = np.zeros(brain.shape, np.float32)
    inner = 0.0
    for outer, intensity in HEAD_SHELLS:
        shells[(distance > inner) & (distance <= outer)] = intensity
        inner = outer
    return ndimage.gaussian_filter(shells, sigma=1.0)


_ANATOMY: TemplateAnatomy | None = None


def load_template_anatomy() -> TemplateAnatomy:
    """The padded template anatomy, built once per process (or installed by a parent process)."""
    global _ANATOMY
    if _ANATOMY is None:
        _ANATOMY = _build_template_anatomy()
    return _ANATOMY


def install_template_anatomy(anatomy: TemplateAnatomy) -> None:
    """Use an anatomy built elsewhere (worker processes receive the parent's shared-memory copy)."""
    global _ANATOMY
    _ANATOMY = anatomy


def _build_template_anatomy() -> TemplateAnatomy:
    """Build the padded template anatomy from nilearn's MNI152 files."""
    from nilearn import datasets

    t1, affine = _load(datasets.load_mni152_template)
    grey, _ = _load(datasets.load_mni152_gm_template)
    white, _ = _load(datasets.load_mni152_wm_template)
    brain, _ = _load(datasets.load_mni152_brain_mask)
    t1, grey, white = _pad(t1), _pad(grey), _pad(white)
    brain = _pad(brain) > 0.5
    padded_affine = affine.copy()
    padded_affine[:3, 3] -= PAD_MM * np.diag(affine)[:3]

    head = np.where(brain, t1, _head_shells(brain)).astype(np.float32)
    coords = world_coordinates(head.shape, padded_affine)
    ventricles = _ventricle_mask(head, grey, white, brain, coords)
    ventricle_coords = np.stack([c[ventricles] for c in coords])
    mtl = gaussian_blobs(coords, MTL_CENTRES, MTL_SIGMAS)
    region = (mtl > 0.5).astype(np.float32)
    sampled = np.stack([head, ventricles, grey * mtl, grey * region, grey * mtl * region])
    return TemplateAnatomy(
        sampled=torch.from_numpy(sampled.astype(np.float32)),
        brain_mask=brain,
        affine=padded_affine,
        csf_intensity=float(head[ventricles].mean()),
        grey_matter_intensity=float(head[grey > 0.7].mean()),
        ventricle_centre=ventricle_coords.mean(axis=1),
        ventricle_spread=ventricle_coords.std(axis=1),
    )


def effect_region(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """Where the simulated AD effect acts, on a grid of ``shape`` whose ``affine`` maps voxels to
    MNI mm (a study's image grid): the ventricles, which expand, and the medial-temporal region
    (Gaussian blobs > ½), which loses grey matter (bool)."""
    from scipy.ndimage import map_coordinates

    anatomy = load_template_anatomy()
    voxels = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    inside = (world - anatomy.affine[:3, 3]) @ np.linalg.inv(anatomy.affine[:3, :3]).T
    ventricles = map_coordinates(anatomy.sampled[1].numpy(), inside.T, order=1, mode="constant")
    mtl = gaussian_blobs(list(world.T), MTL_CENTRES, MTL_SIGMAS)
    return ((ventricles > 0.5) | (mtl > 0.5)).reshape(shape)
