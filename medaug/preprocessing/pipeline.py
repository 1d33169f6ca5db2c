"""The composed ``t1-linear`` pipeline (thesis §1.5.3): N4 → affine to MNI → crop grid → [resize] → min-max."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from monai.transforms import Compose, Resized, ScaleIntensityd

from medaug.configuration import Config, check_at_least
from medaug.errors import ConfigError
from medaug.preprocessing import size_problem
from medaug.preprocessing.registration import RegistrationConfig
from medaug.preprocessing.template import CLINICA_CROP_GRID, RegistrationTemplate, load_registration_template
from medaug.preprocessing.transforms import (
    N4BiasFieldCorrectiond, RegisterToTemplated, RegistrationQCd, ResampleToGridd)


@dataclass
class T1LinearConfig(Config):
    """All parameters of the pipeline; round-trips through ``to_dict`` / ``from_dict`` (JSON, YAML)."""

    section: ClassVar[str] = 't1-linear'

    template: str | None = None          # NIfTI path; None: nilearn's MNI152 2009a (no download)
    template_space: str | None = None    # space- label when the template file name has no tpl- entity
    n4: bool = True
    n4_shrink_factor: int = 4
    n4_spline_distance_mm: float = 600.0
    n4_iterations: tuple[int, ...] = (50, 50, 50, 50)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    min_ncc: float = 0.5
    size: tuple[int, int, int] | None = None   # e.g. (84, 104, 89) for the thesis' downsampled images
    write_crop: bool = True                    # False: keep only the resized copy (22 MB less per image)
    # limits of `medaug preprocess` on one image (an image outside them fails; not registration parameters)
    max_seconds_per_image: float = 600.0
    max_memory_gb: float = 8.0                 # estimated from the NIfTI header before any voxel is read
    spacing_range_mm: tuple[float, float] = (0.05, 10.0)   # plausible voxel spacing of a T1w
    max_field_of_view_mm: float = 600.0        # per axis (voxels × spacing)

    def validate(self) -> None:
        if self.size is not None:
            problem = size_problem(self.size)
            if problem:
                raise ConfigError(f"size: {problem}")
        if not self.write_crop and self.size is None:
            raise ConfigError("write_crop: false keeps only the resized copy, so it needs a size")
        if self.n4_shrink_factor < 1 or self.n4_spline_distance_mm <= 0:
            raise ConfigError("n4_shrink_factor must be ≥ 1 and n4_spline_distance_mm > 0")
        if not -1.0 <= self.min_ncc <= 1.0:
            raise ConfigError(f"min_ncc must be in [-1, 1], got {self.min_ncc}")
        check_at_least(self, max_seconds_per_image=1e-3, max_memory_gb=1e-6, spacing_range_mm=1e-6,
                       max_field_of_view_mm=1.0)
        if self.spacing_range_mm[0] >= self.spacing_range_mm[1]:
            raise ConfigError(f"{self.section}.spacing_range_mm must be (min, max) with min < max, "
                              f"got {list(self.spacing_range_mm)}")

    def registration_parameters(self) -> dict:
        """The options that decide an image's registration and crop (all but size and the per-image limits)."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_REGISTRATION}


# options that change only the outputs kept or which images are accepted, never a registration
NOT_REGISTRATION = ("size", "write_crop", "max_seconds_per_image", "max_memory_gb", "spacing_range_mm", "max_field_of_view_mm")


def t1_linear(config: T1LinearConfig | None = None, template: RegistrationTemplate | None = None, *,
              keys: str = "image", resize_and_rescale: bool = True) -> Compose:
    """N4 → rigid+affine registration → Clinica crop grid → QC, then (optionally) resize and min-max.

    With ``resize_and_rescale=False`` the output is Clinica's ``desc-Crop`` image (1 mm, intensities
    kept), which is what ``medaug preprocess`` stores.
    """
    config = config or T1LinearConfig()
    template = template or load_registration_template(config.template, space=config.template_space)
    steps = []
    if config.n4:
        steps.append(N4BiasFieldCorrectiond(keys, config.n4_shrink_factor, config.n4_spline_distance_mm,
                                            config.n4_iterations))
    steps += [RegisterToTemplated(template, keys, config.registration),
              ResampleToGridd(keys, CLINICA_CROP_GRID),
              RegistrationQCd(template, keys, CLINICA_CROP_GRID, config.min_ncc)]
    if resize_and_rescale:
        steps += output_transforms(config.size, keys).transforms
    return Compose(steps)


def output_transforms(size: tuple[int, int, int] | None, keys: str = "image") -> Compose:
    """Optional trilinear resizing, then min-max rescaling to [0, 1] (thesis §1.5.3 steps 6-7)."""
    steps = [Resized(keys, spatial_size=size, mode="trilinear", align_corners=False)] if size else []
    return Compose(steps + [ScaleIntensityd(keys, minv=0.0, maxv=1.0)])
