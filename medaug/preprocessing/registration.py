"""Affine registration to a template (SimpleITK), resampling onto an output grid, and QC.

Fixed image: the template (metric restricted to its dilated brain mask); moving image: the
subject. Centred (moments) initialisation, then a rigid and an affine stage, each multi-resolution,
maximising Mattes mutual information with seeded random sampling. The result maps template RAS
millimetres to subject RAS millimetres (x_subject = T · x_template). The optimiser runs on one
thread so that the same seed gives the same transform (parallelism comes from images in parallel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import SimpleITK as sitk

from medaug.configuration import Config
from medaug.errors import ConfigError
from medaug.preprocessing.sitk_image import ras_to_transform, to_sitk, transform_to_ras
from medaug.preprocessing.template import GridSpec, RegistrationTemplate


@dataclass
class RegistrationConfig(Config):
    """Parameters of :func:`register_affine` (defaults tuned on the example cohorts, see README)."""

    section: ClassVar[str] = 'registration'

    rigid_shrink: tuple[int, ...] = (8, 4, 2)
    rigid_sigmas_mm: tuple[float, ...] = (4.0, 2.0, 1.0)
    affine_shrink: tuple[int, ...] = (4, 2, 1)
    affine_sigmas_mm: tuple[float, ...] = (2.0, 1.0, 0.0)
    iterations: int = 200
    learning_rate: float = 2.0  # 1.0 avoids the affine stage's divergence seen on 4 mm images (README)
    # "image": skip the levels whose template spacing (shrink × voxel) is finer than the image's finest
    # voxel (the coarsest level of each stage always runs); 2-3× faster on coarse images, same NCC
    finest_level: Literal["template", "image"] = "template"
    histogram_bins: int = 32
    sampling_fraction: float = 0.1
    min_samples: int = 20000  # per level: coarse levels sample more densely
    mask_dilation_mm: float = 4.0
    seed: int = 0

    def validate(self) -> None:
        if len(self.rigid_shrink) != len(self.rigid_sigmas_mm) or len(self.affine_shrink) != len(self.affine_sigmas_mm):
            raise ConfigError("each registration stage needs one smoothing sigma per shrink factor")
        if self.seed < 0:
            raise ConfigError(f"seed must be ≥ 0, got {self.seed}")
        if not 0.0 < self.sampling_fraction <= 1.0 or self.iterations < 1 or self.histogram_bins < 4:
            raise ConfigError("registration needs 0 < sampling_fraction ≤ 1, iterations ≥ 1, histogram_bins ≥ 4")
        if self.learning_rate <= 0:
            raise ConfigError(f"registration.learning_rate must be > 0, got {self.learning_rate}")


@dataclass(frozen=True)
class RegistrationResult:
    """The template → subject RAS matrix and the optimiser's final state."""

    template_to_image: np.ndarray
    metric: float
    stop_condition: str


def template_image(template: RegistrationTemplate) -> tuple[sitk.Image, sitk.Image]:
    """The template and its brain mask as SimpleITK images."""
    return to_sitk(template.voxels, template.affine), sitk.Cast(
        to_sitk(template.brain_mask.astype(np.float32), template.affine) > 0.5, sitk.sitkUInt8)


def _stage(fixed, moving, mask, transform, shrink, sigmas, config) -> tuple[sitk.Transform, float, str]:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # SimpleITK reads seed 0 as "wall clock" (irreproducible): shift seeds by one
    mask_voxels = float(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    fractions = [min(1.0, max(config.sampling_fraction, config.min_samples * f ** 3 / mask_voxels)) for f in shrink]
    method.SetMetricSamplingPercentagePerLevel(fractions, config.seed + 1)
    method.SetMetricFixedMask(mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=config.learning_rate, minStep=1e-3, numberOfIterations=config.iterations, relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink))
    method.SetSmoothingSigmasPerLevel(list(sigmas))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed, moving)
    return transform, method.GetMetricValue(), method.GetOptimizerStopConditionDescription()


def register_affine(image: sitk.Image, template: RegistrationTemplate,
                    config: RegistrationConfig | None = None) -> RegistrationResult:
    """Rigid then affine registration of ``image`` (moving) to ``template`` (fixed)."""
    config = config or RegistrationConfig()
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    # threaded metric reductions change the last digits from run to run: one thread is bit-reproducible
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        return _register(image, template, config)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def levels(shrink: tuple[int, ...], sigmas: tuple[float, ...], template_spacing: float, image_spacing: float,
           finest: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The (shrink, sigma) levels of a stage: all of them, or with ``finest="image"`` those whose
    template spacing is at least the image's voxel (and always the coarsest)."""
    kept = [(f, s) for index, (f, s) in enumerate(zip(shrink, sigmas))
            if finest == "template" or index == 0 or f * template_spacing >= image_spacing]
    return tuple(f for f, _ in kept), tuple(s for _, s in kept)


def _register(image: sitk.Image, template: RegistrationTemplate, config: RegistrationConfig) -> RegistrationResult:
    fixed, mask = template_image(template)
    resolution = (min(fixed.GetSpacing()), min(image.GetSpacing()), config.finest_level)
    radius = [max(1, round(config.mask_dilation_mm / s)) for s in fixed.GetSpacing()]
    mask = sitk.BinaryDilate(mask, radius)
    moving = sitk.Cast(image, sitk.sitkFloat32)
    rigid = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                              sitk.CenteredTransformInitializerFilter.MOMENTS)
    rigid, _, _ = _stage(fixed, moving, mask, rigid, *levels(config.rigid_shrink, config.rigid_sigmas_mm, *resolution), config)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    affine, metric, stop = _stage(fixed, moving, mask, affine, *levels(config.affine_shrink, config.affine_sigmas_mm, *resolution),
                                  config)
    return RegistrationResult(transform_to_ras(affine), float(metric), stop)


def resample_to_grid(image: sitk.Image, template_to_image: np.ndarray, grid: GridSpec) -> np.ndarray:
    """Trilinear resampling of ``image`` onto ``grid`` (template space) through the registration."""
    reference = to_sitk(np.zeros(grid.shape, np.float32), grid.affine)
    resampled = sitk.Resample(image, reference, ras_to_transform(template_to_image), sitk.sitkLinear, 0.0,
                              sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled).transpose(2, 1, 0).copy()


def linear_scales(template_to_image: np.ndarray) -> np.ndarray:
    """Singular values of the linear part (scalings of the registration)."""
    return np.linalg.svd(template_to_image[:3, :3], compute_uv=False)


def normalized_cross_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """NCC = Σ (a − ā)(b − b̄) / √(Σ (a − ā)² Σ (b − b̄)²) over ``mask``; 0 for a constant image."""
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0
