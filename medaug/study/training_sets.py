"""Training sets of the augmentation study (thesis §1.4-1.5): real only, synthetic only,
real + synthetic, and classic augmentation ×k (TorchIO), all balanced across classes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medaug.data.volumes import AugmentedVolumes, Volumes
from medaug.errors import BalanceError, ConfigError

CONDITIONS = ("real", "synthetic", "real+synthetic", "classic")


@dataclass
class TrainingSet:
    """Images (N, C, *spatial) streamed from their sources, integer labels (N,) and a synthetic
    flag per image (N,)."""

    images: Volumes
    labels: torch.Tensor
    synthetic: torch.Tensor


def classic_augmentation():
    """Realistic MRI perturbations: affine, elastic deformation, bias field, noise, motion (a TorchIO
    ``Compose``; TorchIO is imported here, so streaming training sets load without it)."""
    import torchio as tio

    return tio.Compose([tio.RandomAffine(scales=0.05, degrees=5, translation=3, p=0.8),
                        tio.RandomElasticDeformation(num_control_points=5, max_displacement=3, p=0.5),
                        tio.RandomBiasField(coefficients=0.3, p=0.5), tio.RandomNoise(std=(0, 0.03), p=0.5),
                        tio.RandomMotion(degrees=3, translation=3, num_transforms=1, p=0.2)])


def _augment(image: torch.Tensor) -> torch.Tensor:
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


def build_training_set(real, labels: torch.Tensor, condition: str, *,
                       synthetic: dict[int, Volumes | torch.Tensor] | None = None, synthetic_per_class: int = 0,
                       copies: int = 0, seed: int = 0) -> TrainingSet:
    """Assemble one condition as a view on its sources (nothing is copied); synthetic images are
    taken ``synthetic_per_class`` per class so the added images are balanced whatever the real
    class sizes."""
    if condition not in CONDITIONS:
        raise ConfigError(f"unknown training-set condition {condition!r}; choose among {', '.join(CONDITIONS)}")
    parts = []
    if condition in ("real", "real+synthetic", "classic"):
        parts.append((Volumes.of(real), labels, False))
    if condition in ("synthetic", "real+synthetic"):
        if not synthetic or synthetic_per_class < 1:
            raise ConfigError(f"condition {condition!r} needs synthetic images and synthetic_per_class ≥ 1")
        for label in sorted(labels.unique().tolist()):
            pool = synthetic.get(label)
            if pool is None or len(pool) < synthetic_per_class:
                raise BalanceError(f"class {label}: {0 if pool is None else len(pool)} synthetic images, "
                                   f"{synthetic_per_class} requested; generate more")
            parts.append((Volumes.of(pool).take(np.arange(synthetic_per_class)),
                          torch.full((synthetic_per_class,), label), True))
    if condition == "classic":
        if copies < 1:
            raise ConfigError("condition 'classic' needs copies ≥ 1")
        parts.append((augmented_copies(real, copies, seed), labels.repeat(copies), False))
    return TrainingSet(Volumes.concat(p[0] for p in parts), torch.cat([p[1] for p in parts]).long(),
                       torch.cat([torch.full((len(p[0]),), p[2]) for p in parts]))
