"""Classic augmentation: the real images plus ``k`` TorchIO-perturbed copies of each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from medaug.configuration import Config, check_at_least
from medaug.data.volumes import AugmentedVolumes, Volumes
from medaug.errors import ConfigError
from medaug.study.conditions import CONDITIONS, Condition, ConditionKind, Part


@dataclass
class ClassicOptions(Config):
    section: ClassVar[str] = "classic condition options"

    copies: tuple[int, ...] = (5,)   # one variant per value: augmented copies of each real image

    def validate(self) -> None:
        if not self.copies:
            raise ConfigError(f"{self.section}.copies: give at least one number of copies")
        check_at_least(self, copies=1)


def classic_augmentation():
    """Realistic MRI perturbations: affine, elastic deformation, bias field, noise, motion (a TorchIO
    ``Compose``; TorchIO is imported here, so streaming training sets load without it)."""
    import torchio as tio

    return tio.Compose([tio.RandomAffine(scales=0.05, degrees=5, translation=3, p=0.8),
                        tio.RandomElasticDeformation(num_control_points=5, max_displacement=3, p=0.5),
                        tio.RandomBiasField(coefficients=0.3, p=0.5), tio.RandomNoise(std=(0, 0.03), p=0.5),
                        tio.RandomMotion(degrees=3, translation=3, num_transforms=1, p=0.2)])


def _augment(image):
    import torchio as tio

    return classic_augmentation()(tio.ScalarImage(tensor=image)).data.float()


def augmented_copies(images, copies: int, seed: int) -> AugmentedVolumes:
    """``copies`` TorchIO-augmented versions of every 3D image, drawn when read; image k of the
    result uses the seed (seed, k), so a run sees the same copies in any order or worker."""
    volumes = Volumes.of(images)
    shape = volumes.shape if len(volumes) else ()
    if len(shape) != 5:
        raise ConfigError(f"classic augmentation needs 3D images (N, C, X, Y, Z), got shape {shape}")
    return AugmentedVolumes(volumes, copies, seed, _augment)


@CONDITIONS.register
class Classic(ConditionKind):
    """The real images plus ``copies`` TorchIO-augmented copies of each (affine, elastic, bias
    field, noise, motion)."""

    name = "classic"
    Options = ClassicOptions
    colour = "tab:orange"

    @classmethod
    def variants(cls, options, pools):
        return [Condition(cls.name, f"classic-x{k}", copies=k) for k in options.copies]

    @classmethod
    def parts(cls, condition, real, labels, synthetic, seed):
        if condition.copies < 1:
            raise ConfigError("condition 'classic' needs copies ≥ 1")
        return [Part(real, labels, False),
                Part(augmented_copies(real, condition.copies, seed), labels.repeat(condition.copies), False)]
