"""Classifiers of the augmentation study, one module each, registered by name.

A classifier registers itself with ``@CLASSIFIERS.register``; ``fit_predict`` trains it on one
task's training set and returns class probabilities (N, classes) on each evaluation set, plus a
per-epoch training log or None. Its options are the study's ``classifier_options: {name: {...}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from medaug.configuration import Config
from medaug.registry import NoOptions, Registry

if TYPE_CHECKING:
    from medaug.study.data import ImageSet
    from medaug.study.models import ClassifierProvenance
    from medaug.study.tasks import StudyContext
    from medaug.study.training_sets import TrainingSet

CLASSIFIERS: Registry[type[Classifier]] = Registry("classifier", __name__)


class Classifier:
    """Base of study classifiers. ``needs_search``: the study runs the CNN architecture search
    (:mod:`medaug.study.search`) before its tasks; ``trains_network``: it reads
    ``classifier_training`` (its tasks are redone when those settings change, the others are not)."""

    name: ClassVar[str]
    Options: ClassVar[type[Config]] = NoOptions
    needs_search: ClassVar[bool] = False
    trains_network: ClassVar[bool] = False
    saves_model: ClassVar[bool] = False  # ``save`` keeps the fitted model (:mod:`medaug.study.models`)

    def __init__(self, options: Config | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def fit_predict(self, context: StudyContext, train: TrainingSet, seed: int,
                    sets: dict[str, ImageSet]) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
        raise NotImplementedError

    def save(self, folder: Path, provenance: ClassifierProvenance) -> None:
        """Keep the model fitted by the last :meth:`fit_predict` in ``folder``."""
        raise NotImplementedError


def build_classifier(name: str, options: dict | None = None) -> Classifier:
    """The classifier registered as ``name`` with its validated options."""
    return CLASSIFIERS.get(name, "classifiers")(CLASSIFIERS.options(name, options, f"classifier_options.{name}"))
