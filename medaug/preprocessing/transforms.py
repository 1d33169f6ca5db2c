"""MONAI dictionary transforms of the ``t1-linear`` steps (channel-first ``MetaTensor`` images, RAS).

Registration stores its template → image RAS matrix under ``"template_to_image"``; resampling
uses it (identity when absent: the image is already in template space); QC adds ``"qc_ncc"``,
``"qc_scales"`` and ``"qc_pass"``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medaug.errors import MedaugError
from medaug.preprocessing.bias import n4_correct
from medaug.preprocessing.registration import (
    RegistrationConfig, linear_scales, normalized_cross_correlation, register_affine, resample_to_grid)
from medaug.preprocessing.sitk_image import from_sitk, to_sitk
from medaug.preprocessing.template import CLINICA_CROP_GRID, GridSpec, RegistrationTemplate

TRANSFORM_KEY = "template_to_image"
SCALE_LIMITS = (0.6, 1.6)  # a head is never scaled beyond this by an affine registration to MNI


class PreprocessingError(MedaugError):
    """A step failed on one image; the message is the reason recorded in the QC table."""


def _affine(image: MetaTensor) -> np.ndarray:
    return image.affine.detach().cpu().numpy().astype(np.float64)


def _meta(image: MetaTensor, **updates) -> dict:
    """Metadata to carry over, without the affine (set separately on the new tensor)."""
    return {**{k: v for k, v in image.meta.items() if k != "affine"}, **updates}


def _volume(image: torch.Tensor, key: Hashable) -> torch.Tensor:
    if image.ndim != 4 or image.shape[0] != 1:
        raise PreprocessingError(f"{key}: expected one channel-first 3D image, got shape {tuple(image.shape)}")
    return image[0]


class N4BiasFieldCorrectiond(MapTransform):
    """N4 bias-field correction (:func:`medaug.preprocessing.bias.n4_correct`), affine unchanged."""

    def __init__(self, keys: str | Sequence[str] = "image", shrink_factor: int = 4,
                 spline_distance_mm: float = 600.0, iterations: Sequence[int] = (50, 50, 50, 50)) -> None:
        super().__init__(keys)
        self.options = dict(shrink_factor=shrink_factor, spline_distance_mm=spline_distance_mm,
                            iterations=tuple(iterations))

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            image = out[key]
            try:
                corrected, _ = n4_correct(to_sitk(_volume(image, key), _affine(image)), **self.options)
            except ValueError as error:
                raise PreprocessingError(f"N4 bias correction failed: {error}") from error
            voxels, _ = from_sitk(corrected)
            out[key] = MetaTensor(torch.from_numpy(voxels)[None], affine=image.affine, meta=_meta(image))
        return out


class RegisterToTemplated(MapTransform):
    """Affine registration to ``template``; stores the template → image RAS matrix under ``template_to_image``."""

    def __init__(self, template: RegistrationTemplate, keys: str | Sequence[str] = "image",
                 config: RegistrationConfig | None = None) -> None:
        super().__init__(keys)
        self.template, self.config = template, config or RegistrationConfig()

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            image = out[key]
            try:
                result = register_affine(to_sitk(_volume(image, key), _affine(image)), self.template, self.config)
            except RuntimeError as error:  # SimpleITK raises RuntimeError when the optimiser fails
                raise PreprocessingError(f"registration failed: {str(error).splitlines()[-1]}") from error
            out[TRANSFORM_KEY] = result.template_to_image
            out["registration_metric"] = result.metric
        return out


class ResampleToGridd(MapTransform):
    """Trilinear resampling onto ``grid`` (default: the Clinica 169×208×179 crop) through ``template_to_image``."""

    def __init__(self, keys: str | Sequence[str] = "image", grid: GridSpec = CLINICA_CROP_GRID) -> None:
        super().__init__(keys)
        self.grid = grid

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        transform = np.asarray(out.get(TRANSFORM_KEY, np.eye(4)), dtype=np.float64)
        for key in self.key_iterator(out):
            image = out[key]
            voxels = resample_to_grid(to_sitk(_volume(image, key), _affine(image)), transform, self.grid)
            out[key] = MetaTensor(torch.from_numpy(voxels)[None], affine=torch.as_tensor(self.grid.affine),
                                  meta=_meta(image, space="RAS"))
        return out


class RegistrationQCd(MapTransform):
    """QC of an image on the template grid: NCC with the template inside its brain mask, and scalings.

    ``qc_pass`` is False when NCC < ``min_ncc`` or a singular value of the registration leaves
    :data:`SCALE_LIMITS`; ``qc_reason`` says which.
    """

    def __init__(self, template: RegistrationTemplate, keys: str | Sequence[str] = "image",
                 grid: GridSpec = CLINICA_CROP_GRID, min_ncc: float = 0.5) -> None:
        super().__init__(keys)
        self.min_ncc = min_ncc
        identity = resample_to_grid(to_sitk(template.voxels, template.affine), np.eye(4), grid)
        mask = resample_to_grid(to_sitk(template.brain_mask.astype(np.float32), template.affine), np.eye(4), grid)
        self.reference, self.mask = identity, mask > 0.5

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        scales = linear_scales(np.asarray(out.get(TRANSFORM_KEY, np.eye(4))))
        for key in self.key_iterator(out):
            voxels = _volume(out[key], key).detach().cpu().numpy()
            if voxels.shape != self.reference.shape:
                raise PreprocessingError(f"QC needs the image on the template grid {self.reference.shape}, "
                                         f"got {voxels.shape}; resample first")
            ncc = normalized_cross_correlation(voxels, self.reference, self.mask)
            reasons = []
            if ncc < self.min_ncc:
                reasons.append(f"NCC with the template {ncc:.2f} < {self.min_ncc}")
            if scales.min() < SCALE_LIMITS[0] or scales.max() > SCALE_LIMITS[1]:
                reasons.append(f"registration scalings {np.round(scales, 2).tolist()} outside {SCALE_LIMITS} "
                               "(diverged)")
            out.update(qc_ncc=ncc, qc_scales=scales.tolist(), qc_pass=not reasons, qc_reason="; ".join(reasons))
        return out
