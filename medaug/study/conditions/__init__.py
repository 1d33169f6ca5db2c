"""Study conditions: the training sets a study compares (thesis §1.4-1.5), one module each.

A condition kind registers itself with ``@CONDITIONS.register`` and declares its ``Options`` (a
study YAML gives them as ``conditions: [{kind: classic, options: {copies: [1, 5]}}]``); its
``variants`` expand those options and the study's synthetic pools into named :class:`Condition` s
(one per pool and size, per number of copies, ...) and its ``parts`` assemble a training set from
the real images and the synthetic pools. Kinds see their own options only, never the study.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

from medaug.configuration import Config
from medaug.data.volumes import Volumes
from medaug.registry import NoOptions, Registry

CONDITIONS: Registry[type[ConditionKind]] = Registry("condition", __name__)


@dataclass(frozen=True)
class Condition:
    """One training set of a study: its ``kind`` (a registered condition), unique ``name`` and sizes
    (``sampler``: the synthetic pool's label; ``per_class``: synthetic images per class;
    ``copies``: augmented copies per real image)."""

    kind: str
    name: str
    sampler: str | None = None
    per_class: int = 0
    copies: int = 0


class Part(NamedTuple):
    """Images of a training set, their integer labels and whether they are synthetic."""

    images: Volumes
    labels: torch.Tensor
    synthetic: bool


class ConditionKind:
    """Base of condition kinds. ``uses_synthetic``: needs generators and pools; ``gan_test``: the
    classifier trained on it is also tested on each synthetic pool; ``gan_train``: trained on
    synthetic images only; ``colour``: its bars in the report figure."""

    name: ClassVar[str]
    Options: ClassVar[type[Config]] = NoOptions
    uses_synthetic: ClassVar[bool] = False
    gan_test: ClassVar[bool] = False
    gan_train: ClassVar[bool] = False
    colour: ClassVar[str] = "tab:purple"

    @classmethod
    def variants(cls, options: Config, pools: tuple[str, ...]) -> list[Condition]:
        """The named training sets of this kind with ``options``, given the study's synthetic
        ``pools`` (sampler entries' labels); :class:`~medaug.errors.ConfigError` if it cannot run."""
        return [Condition(cls.name, cls.name)]

    @classmethod
    def synthetic_per_class(cls, options: Config) -> int:
        """Synthetic images per class its variants need from each pool (0: none)."""
        return 0

    @classmethod
    def parts(cls, condition: Condition, real: Volumes, labels: torch.Tensor,
              synthetic: dict[int, Volumes | torch.Tensor] | None, seed: int) -> list[Part]:
        raise NotImplementedError
