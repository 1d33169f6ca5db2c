"""Classifiers of the augmentation study, one module each, registered by name.

A classifier registers itself with ``@CLASSIFIERS.register`` and declares its ``Options`` (a
study YAML gives them as ``classifiers: [{name: sklearn-knn, options: {n_neighbors: 3}}]``; a
CNN's ``training`` and ``search`` settings are among its options). ``fit_predict`` trains it on
one task's training set and returns class probabilities (N, classes) on each evaluation set, plus
a per-epoch training log or None. A classifier sees its options and a :class:`FitContext`, never
the study.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from medaug.configuration import Config
from medaug.registry import NoOptions, Registry

CLASSIFIERS: Registry[type[Classifier]] = Registry("classifier", __name__)


@dataclass
class FitContext:
    """What a task gives its classifier besides the training set: the class names, the validation
    images (model selection: ``images``, ``labels``), the study's device and precision, and the
    architecture the study's search chose (classifiers that ``needs_search``)."""

    labels: tuple[str, ...]
    validation: Any
    device: str = "cpu"
    mixed_precision: bool = False
    architecture: Any = None


class Classifier:
    """Base of study classifiers. ``needs_search``: the study runs the CNN architecture search
    (:mod:`medaug.study.search`, with its ``options.search`` and ``options.training``) before
    its tasks; ``saves_model``: ``save`` keeps the fitted model (:mod:`medaug.study.saved_classifiers`)."""

    name: ClassVar[str]
    Options: ClassVar[type[Config]] = NoOptions
    needs_search: ClassVar[bool] = False
    saves_model: ClassVar[bool] = False

    def __init__(self, options: Config | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def fit_predict(self, fit: FitContext, train, seed: int,
                    sets: dict) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
        """Train on ``train`` (images, labels, synthetic flags) with ``seed``; probabilities on each
        of ``sets`` (name → images, labels)."""
        raise NotImplementedError

    def save(self, folder: Path, provenance) -> None:
        """Keep the model fitted by the last :meth:`fit_predict` in ``folder``."""
        raise NotImplementedError


def build_classifier(name: str, options: dict | Config | None = None) -> Classifier:
    """The classifier registered as ``name`` with its validated options."""
    if isinstance(options, Config):
        return CLASSIFIERS.get(name, "classifiers")(options)
    return CLASSIFIERS.get(name, "classifiers")(CLASSIFIERS.options(name, options, f"classifiers ({name}) options"))
