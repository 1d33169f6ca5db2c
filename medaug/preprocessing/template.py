"""Registration templates and the Clinica crop grid.

Clinica crops ``t1-linear`` outputs to the voxel box [12:181, 13:221, 0:179] of the 193×229×193
MNI152NLin2009cSym grid (1 mm, origin (−96, −132, −78) mm), i.e. a 169×208×179 grid at 1 mm with
origin (−84, −119, −78) mm in RAS world coordinates. The box is defined in world millimetres so
that it applies to any MNI152 template (nilearn's 2009a grid is 197×233×189, origin (−98, −134, −72)).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medaug.errors import ConfigError, InputDataError
from medaug.preprocessing import CLINICA_CROP_SHAPE
from medaug.preprocessing.bias import head_mask
from medaug.preprocessing.sitk_image import from_sitk, to_sitk

CLINICA_CROP_AFFINE = np.array([[1.0, 0, 0, -84.0], [0, 1.0, 0, -119.0], [0, 0, 1.0, -78.0], [0, 0, 0, 1.0]])
NILEARN_TEMPLATE_SPACE = "MNI152NLin2009aAsym"


@dataclass(frozen=True)
class GridSpec:
    """An output voxel grid: shape and RAS affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray


CLINICA_CROP_GRID = GridSpec(CLINICA_CROP_SHAPE, CLINICA_CROP_AFFINE)


@dataclass(frozen=True)
class RegistrationTemplate:
    """A T1w template (RAS voxels + affine), its brain mask and its BIDS ``space-`` label."""

    voxels: np.ndarray
    affine: np.ndarray
    brain_mask: np.ndarray
    space: str


def load_registration_template(path: str | os.PathLike | None = None, *, space: str | None = None,
                               mask_path: str | os.PathLike | None = None) -> RegistrationTemplate:
    """The template to register to: nilearn's MNI152 2009a T1 (no download) or a NIfTI file.

    For a file, the ``space-`` label is ``space`` or the ``tpl-<label>`` entity of the name, and
    the mask is ``mask_path`` or an Otsu threshold of the template.
    """
    if path is None:
        from nilearn import datasets

        t1 = nib.as_closest_canonical(datasets.load_mni152_template(resolution=1))
        mask = nib.as_closest_canonical(datasets.load_mni152_brain_mask(resolution=1))
        return RegistrationTemplate(t1.get_fdata(dtype=np.float32), t1.affine,
                                    mask.get_fdata() > 0.5, space or NILEARN_TEMPLATE_SPACE)
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"template {path} not found")
    found = re.search(r"tpl-([A-Za-z0-9]+)", path.name)
    space = space or (found.group(1) if found else None)
    if space is None:
        raise ConfigError(f"name the template space of {path} (for example MNI152NLin2009cSym): "
                          "its file name has no tpl-<label> entity")
    try:
        image = nib.as_closest_canonical(nib.load(path))
        voxels = image.get_fdata(dtype=np.float32)
    except Exception as error:  # noqa: BLE001 (nibabel raises many types for foreign or corrupt files)
        raise InputDataError(f"cannot read the template {path} as NIfTI ({' '.join(str(error).split())}); give a 3D "
                             "T1w NIfTI template, or leave --template out for nilearn's MNI152") from None
    if voxels.ndim != 3:
        raise InputDataError(f"template {path} has shape {voxels.shape}; a 3D T1w template is expected")
    if mask_path is not None:
        mask = nib.as_closest_canonical(nib.load(mask_path)).get_fdata() > 0.5
    else:
        mask = from_sitk(head_mask(to_sitk(voxels, image.affine)))[0] > 0.5
    return RegistrationTemplate(voxels, image.affine, mask, space)


def resample_template(template: RegistrationTemplate, voxel_mm: float) -> RegistrationTemplate:
    """The template on a coarser isotropic grid covering the same field of view (faster registration)."""
    spacing = np.linalg.norm(template.affine[:3, :3], axis=0)
    shape = tuple(int(np.ceil(n * s / voxel_mm)) for n, s in zip(template.voxels.shape, spacing))
    affine = template.affine.copy()
    affine[:3, :3] = template.affine[:3, :3] / spacing * voxel_mm
    affine[:3, 3] += affine[:3, :3] @ np.full(3, 0.5) - template.affine[:3, :3] @ np.full(3, 0.5)
    reference = to_sitk(np.zeros(shape, np.float32), affine)

    def resample(volume: np.ndarray) -> np.ndarray:
        smoothed = sitk.SmoothingRecursiveGaussian(to_sitk(volume, template.affine), voxel_mm / 2.0)
        return from_sitk(sitk.Resample(smoothed, reference, sitk.Transform(), sitk.sitkLinear, 0.0))[0]

    return RegistrationTemplate(resample(template.voxels), affine,
                                resample(template.brain_mask.astype(np.float32)) > 0.5, template.space)
