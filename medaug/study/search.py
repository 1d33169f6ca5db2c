"""The "optimized" CNN: a small random search over blocks, filters, FC widths, dropout, learning
rate and weight decay, scored by subject-level stratified cross-validation of the train split
(thesis §1.5.5 compares the Conv5_FC3 baseline with such an optimized network).

Trial 0 is the baseline architecture, so the chosen network is never worse on cross-validation.
A fold's score is the best validation balanced accuracy over its epochs (the model-selection
rule of the study), which flatters every trial alike.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

from medaug.configuration import Config, check_seed
from medaug.errors import ConfigError
from medaug.data.volumes import Volumes
from medaug.nets.classifiers import Conv5FC3
from medaug.study.network_training import ClassifierTraining, train_classifier

logger = logging.getLogger(__name__)


@dataclass
class CNNArchitecture(Config):
    """Conv5_FC3-family network and its optimiser settings."""

    section: ClassVar[str] = 'CNN architecture'

    channels: tuple[int, ...] = (8, 16, 32, 64, 128)
    dropout: float = 0.5
    fc_scale: float = 1.0
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4

    def build(self, input_shape, classes: int = 2) -> Conv5FC3:
        return Conv5FC3(input_shape, classes, self.channels, self.dropout, self.fc_scale)

    def training(self, base: ClassifierTraining, seed: int, epochs: int | None = None) -> ClassifierTraining:
        return dataclasses.replace(base, learning_rate=self.learning_rate, weight_decay=self.weight_decay, seed=seed,
                                   epochs=epochs or base.epochs)


@dataclass
class SearchSettings(Config):
    """The random search of ``cnn-optimized``: ``trials`` architectures, each scored by ``folds``-fold
    cross-validation of the train split with ``epochs`` per fold."""

    section: ClassVar[str] = "search"

    trials: int = 8
    folds: int = 3
    epochs: int = 20
    seed: int = 0

    def validate(self) -> None:
        if self.trials < 1 or self.folds < 2 or self.epochs < 1:
            raise ConfigError("search needs trials ≥ 1, folds ≥ 2 and epochs ≥ 1")
        check_seed(self.seed, f"{self.section}.seed")


def draw_architecture(rng: np.random.Generator) -> CNNArchitecture:
    """One point of the search space: 3-5 blocks doubling from 4, 8 or 16 filters, FC widths ×½-×2,
    dropout 0-0.5, learning rate 10⁻⁵-10⁻³ and weight decay 10⁻⁶-10⁻² (log-uniform)."""
    blocks, first = int(rng.integers(3, 6)), int(rng.choice([4, 8, 16]))
    return CNNArchitecture(channels=tuple(first * 2 ** i for i in range(blocks)),
                           dropout=float(rng.choice([0.0, 0.2, 0.5])), fc_scale=float(rng.choice([0.5, 1.0, 2.0])),
                           learning_rate=float(10 ** rng.uniform(-5, -3)), weight_decay=float(10 ** rng.uniform(-6, -2)))


def cross_validated_accuracy(architecture: CNNArchitecture, images, labels: torch.Tensor,
                             groups: np.ndarray, *, folds: int, epochs: int, seed: int,
                             base: ClassifierTraining) -> list[float]:
    """Per-fold best validation balanced accuracy; folds keep each subject's images together."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    images = Volumes.of(images)
    scores = []
    for fold, (train, validation) in enumerate(splitter.split(np.zeros(len(labels)), labels.numpy(), groups)):
        torch.manual_seed(seed + fold)
        model = architecture.build(tuple(images.shape[1:]))
        _, log = train_classifier(model, (images.take(train), labels[train]),
                                  (images.take(validation), labels[validation]),
                                  architecture.training(base, seed + fold, epochs))
        scores.append(max(row["val_balanced_accuracy"] for row in log))
    return scores


def random_search(images, labels: torch.Tensor, groups: np.ndarray, *, trials: int, folds: int,
                  epochs: int, seed: int, base: ClassifierTraining) -> tuple[CNNArchitecture, pd.DataFrame]:
    """Evaluate the baseline and ``trials − 1`` random architectures; return the best and all trials."""
    rng = np.random.default_rng(seed)
    baseline = CNNArchitecture(learning_rate=base.learning_rate, weight_decay=base.weight_decay)
    candidates = [baseline] + [draw_architecture(rng) for _ in range(trials - 1)]
    rows = []
    for trial, architecture in enumerate(tqdm(candidates, desc="CNN search", unit="trial")):
        scores = cross_validated_accuracy(architecture, images, labels, groups, folds=folds, epochs=epochs,
                                          seed=seed, base=base)
        rows.append({"trial": trial, **architecture.to_dict(), "cv_balanced_accuracy": float(np.mean(scores)),
                     "cv_std": float(np.std(scores))})
        logger.info("search trial %d: CV balanced accuracy %.3f", trial, rows[-1]["cv_balanced_accuracy"])
    table = pd.DataFrame(rows)
    best = int(table["cv_balanced_accuracy"].idxmax())
    return candidates[best], table
