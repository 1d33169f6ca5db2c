"""3D CNNs (thesis §1.5.5): the Conv5_FC3 baseline and the architecture found by random search."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd
import torch

from medaug.configuration import Config
from medaug.study.network_training import ClassifierTraining, predict_proba, train_classifier
from medaug.study.classifiers import CLASSIFIERS, Classifier
from medaug.study.saved_classifiers import save_classifier
from medaug.study.search import CNNArchitecture, SearchSettings


@dataclass
class CNNOptions(Config):
    section: ClassVar[str] = "cnn options"

    training: ClassifierTraining = field(default_factory=ClassifierTraining)


@dataclass
class OptimizedCNNOptions(CNNOptions):
    section: ClassVar[str] = "cnn-optimized options"

    search: SearchSettings = field(default_factory=SearchSettings)


class _CNN(Classifier):
    saves_model = True

    def architecture(self, fit) -> CNNArchitecture:
        raise NotImplementedError

    def settings(self, fit) -> ClassifierTraining:
        """``options.training`` on the study's device and precision."""
        return dataclasses.replace(self.options.training, device=fit.device, mixed_precision=fit.mixed_precision)

    def fit_predict(self, fit, train, seed, sets):
        architecture = self.architecture(fit)
        torch.manual_seed(seed)
        network = architecture.build(tuple(train.images.shape[1:]), classes=len(fit.labels))
        settings = architecture.training(self.settings(fit), seed)
        network, log = train_classifier(network, (train.images, train.labels),
                                        (fit.validation.images, fit.validation.labels), settings, classes=fit.labels)
        self.fitted = (network, architecture)
        return {name: predict_proba(network, s.images, mixed_precision=settings.mixed_precision)
                for name, s in sets.items()}, pd.DataFrame(log)

    def save(self, folder, provenance):
        network, architecture = self.fitted
        save_classifier(folder, network, architecture, provenance)


@CLASSIFIERS.register
class CNN(_CNN):
    """Conv5_FC3 3D CNN with its training options' learning rate and weight decay."""

    name = "cnn"
    Options = CNNOptions

    def architecture(self, fit):
        training = self.options.training
        return CNNArchitecture(learning_rate=training.learning_rate, weight_decay=training.weight_decay)


@CLASSIFIERS.register
class OptimizedCNN(_CNN):
    """3D CNN whose architecture a random search chose (its search options)."""

    name = "cnn-optimized"
    Options = OptimizedCNNOptions
    needs_search = True

    def architecture(self, fit):
        return fit.architecture
