"""Study conditions: the training sets a study compares (thesis §1.4-1.5), one module each.

A condition kind registers itself with ``@CONDITIONS.register``; its ``variants`` expand the study
config into named :class:`Condition` s (one per sampler and size, per number of copies, ...) and its
``parts`` assemble a training set from the real images and the synthetic pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import torch

from medaug.data.volumes import Volumes
from medaug.registry import NoOptions, Registry

if TYPE_CHECKING:
    from medaug.study.config import StudyConfig

CONDITIONS: Registry[type[ConditionKind]] = Registry("condition", __name__)


@dataclass(frozen=True)
class Condition:
    """One training set of a study: its ``kind`` (a registered condition), unique ``name`` and sizes."""

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
    Options: ClassVar[type] = NoOptions
    uses_synthetic: ClassVar[bool] = False
    gan_test: ClassVar[bool] = False
    gan_train: ClassVar[bool] = False
    colour: ClassVar[str] = "tab:purple"

    @classmethod
    def check(cls, config: StudyConfig) -> None:
        """Refuse a study config this condition cannot run (:class:`~medaug.errors.ConfigError`)."""

    @classmethod
    def variants(cls, config: StudyConfig) -> list[Condition]:
        return [Condition(cls.name, cls.name)]

    @classmethod
    def parts(cls, condition: Condition, real: Volumes, labels: torch.Tensor,
              synthetic: dict[int, Volumes | torch.Tensor] | None, seed: int) -> list[Part]:
        raise NotImplementedError
