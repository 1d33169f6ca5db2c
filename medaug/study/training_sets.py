"""Training sets of the augmentation study (thesis §1.4-1.5): real only, synthetic only,
real + synthetic, and classic augmentation ×k (TorchIO), all balanced across classes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchio as tio

from medaug.errors import BalanceError, ConfigError

CONDITIONS = ("real", "synthetic", "real+synthetic", "classic")


@dataclass
class TrainingSet:
    """Images (N, C, *spatial), integer labels (N,) and a synthetic flag per image (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    synthetic: torch.Tensor


def classic_augmentation() -> tio.Compose:
    """Realistic MRI perturbations: affine, elastic deformation, bias field, noise, motion."""
    return tio.Compose([tio.RandomAffine(scales=0.05, degrees=5, translation=3, p=0.8),
                        tio.RandomElasticDeformation(num_control_points=5, max_displacement=3, p=0.5),
                        tio.RandomBiasField(coefficients=0.3, p=0.5), tio.RandomNoise(std=(0, 0.03), p=0.5),
                        tio.RandomMotion(degrees=3, translation=3, num_transforms=1, p=0.2)])


def augmented_copies(images: torch.Tensor, copies: int, seed: int) -> torch.Tensor:
    """``copies`` TorchIO-augmented versions of every 3D image (N·copies, C, X, Y, Z), seeded."""
    if images.ndim != 5:
        raise ConfigError(f"classic augmentation needs 3D images (N, C, X, Y, Z), got shape {tuple(images.shape)}")
    transform = classic_augmentation()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([transform(tio.ScalarImage(tensor=image)).data.float()
                            for _ in range(copies) for image in images])


def build_training_set(real: torch.Tensor, labels: torch.Tensor, condition: str, *,
                       synthetic: dict[int, torch.Tensor] | None = None, synthetic_per_class: int = 0,
                       copies: int = 0, seed: int = 0) -> TrainingSet:
    """Assemble one condition; synthetic images are taken ``synthetic_per_class`` per class so the
    added images are balanced whatever the real class sizes."""
    if condition not in CONDITIONS:
        raise ConfigError(f"unknown training-set condition {condition!r}; choose among {', '.join(CONDITIONS)}")
    parts = []
    if condition in ("real", "real+synthetic", "classic"):
        parts.append((real, labels, False))
    if condition in ("synthetic", "real+synthetic"):
        if not synthetic or synthetic_per_class < 1:
            raise ConfigError(f"condition {condition!r} needs synthetic images and synthetic_per_class ≥ 1")
        for label in sorted(labels.unique().tolist()):
            pool = synthetic.get(label)
            if pool is None or len(pool) < synthetic_per_class:
                raise BalanceError(f"class {label}: {0 if pool is None else len(pool)} synthetic images, "
                                   f"{synthetic_per_class} requested; generate more")
            parts.append((pool[:synthetic_per_class], torch.full((synthetic_per_class,), label), True))
    if condition == "classic":
        if copies < 1:
            raise ConfigError("condition 'classic' needs copies ≥ 1")
        parts.append((augmented_copies(real, copies, seed), labels.repeat(copies), False))
    images = torch.cat([p[0] for p in parts])
    return TrainingSet(images, torch.cat([p[1] for p in parts]).long(),
                       torch.cat([torch.full((len(p[0]),), p[2]) for p in parts]))
