"""Synthetic images from each pool, alone or added to the real ones, balanced across classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from medaug.configuration import Config, check_at_least
from medaug.data.volumes import Volumes
from medaug.errors import BalanceError, ConfigError
from medaug.study.conditions import CONDITIONS, Condition, ConditionKind, Part


@dataclass
class SyntheticOptions(Config):
    section: ClassVar[str] = "synthetic condition options"

    per_class: tuple[int, ...] = (500,)   # one variant per size: synthetic images per class

    def validate(self) -> None:
        if not self.per_class:
            raise ConfigError(f"{self.section}.per_class: give at least one size")
        check_at_least(self, per_class=1)


def synthetic_parts(labels: torch.Tensor, synthetic, per_class: int, name: str) -> list[Part]:
    """``per_class`` images of each class's pool, so the added images are balanced whatever the
    real class sizes."""
    if not synthetic or per_class < 1:
        raise ConfigError(f"condition {name!r} needs synthetic images and per_class ≥ 1")
    parts = []
    for label in sorted(labels.unique().tolist()):
        pool = synthetic.get(label)
        if pool is None or len(pool) < per_class:
            raise BalanceError(f"class {label}: {0 if pool is None else len(pool)} synthetic images, "
                               f"{per_class} requested; generate more")
        parts.append(Part(Volumes.of(pool).take(np.arange(per_class)), torch.full((per_class,), label), True))
    return parts


class _SyntheticKind(ConditionKind):
    uses_synthetic = True
    Options = SyntheticOptions

    @classmethod
    def variants(cls, options, pools):
        if not pools:
            raise ConfigError(f"condition {cls.name!r} needs at least one sampler (samplers: [...])")
        return [Condition(cls.name, f"{cls.name}-{pool}-n{n}", pool, n) for pool in pools for n in options.per_class]

    @classmethod
    def synthetic_per_class(cls, options):
        return max(options.per_class)


@CONDITIONS.register
class Synthetic(_SyntheticKind):
    """Synthetic images only, ``per_class`` per class (GAN-train, thesis Table 1.2)."""

    name = "synthetic"
    gan_train = True
    colour = "tab:green"

    @classmethod
    def parts(cls, condition, real, labels, synthetic, seed):
        return synthetic_parts(labels, synthetic, condition.per_class, cls.name)


@CONDITIONS.register
class RealPlusSynthetic(_SyntheticKind):
    """The real images plus ``per_class`` synthetic images per class."""

    name = "real+synthetic"
    colour = "tab:blue"

    @classmethod
    def parts(cls, condition, real, labels, synthetic, seed):
        return [Part(real, labels, False), *synthetic_parts(labels, synthetic, condition.per_class, cls.name)]
