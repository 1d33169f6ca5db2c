"""Training sets of the augmentation study: a registered condition (:mod:`medaug.study.conditions`)
assembled as a view on its sources (nothing is copied)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medaug.data.volumes import Volumes
from medaug.study.conditions import CONDITIONS, Condition


@dataclass
class TrainingSet:
    """Images (N, C, *spatial) streamed from their sources, integer labels (N,) and a synthetic
    flag per image (N,)."""

    images: Volumes
    labels: torch.Tensor
    synthetic: torch.Tensor


def build_training_set(real, labels: torch.Tensor, condition: Condition | str, *,
                       synthetic: dict[int, Volumes | torch.Tensor] | None = None, synthetic_per_class: int = 0,
                       copies: int = 0, seed: int = 0) -> TrainingSet:
    """The training set of ``condition`` (a :class:`Condition`, or a condition kind's name with
    its sizes given as ``synthetic_per_class`` / ``copies``)."""
    if isinstance(condition, str):
        condition = Condition(CONDITIONS.get(condition, "condition").name, condition, per_class=synthetic_per_class,
                              copies=copies)
    parts = CONDITIONS.get(condition.kind, "condition").parts(condition, Volumes.of(real), labels, synthetic, seed)
    return TrainingSet(Volumes.concat(p.images for p in parts), torch.cat([p.labels for p in parts]).long(),
                       torch.cat([torch.full((len(p.images),), p.synthetic) for p in parts]))
