"""3D CNNs (thesis §1.5.5): the Conv5_FC3 baseline and the architecture found by random search."""

from __future__ import annotations

import pandas as pd
import torch

from medaug.study.classifier import predict_proba, train_classifier
from medaug.study.classifiers import CLASSIFIERS, Classifier
from medaug.study.models import save_classifier
from medaug.study.search import CNNArchitecture


class _CNN(Classifier):
    saves_model = True
    trains_network = True

    def architecture(self, context) -> CNNArchitecture:
        raise NotImplementedError

    def fit_predict(self, context, train, seed, sets):
        config, data = context.config, context.data
        architecture = self.architecture(context)
        torch.manual_seed(seed)
        network = architecture.build(tuple(train.images.shape[1:]), classes=len(config.data.labels))
        settings = architecture.training(config.classifier_settings(), seed)
        network, log = train_classifier(network, (train.images, train.labels),
                                        (data.validation.images, data.validation.labels), settings,
                                        classes=config.data.labels)
        self.fitted = (network, architecture)
        return {name: predict_proba(network, s.images, mixed_precision=settings.mixed_precision)
                for name, s in sets.items()}, pd.DataFrame(log)

    def save(self, folder, provenance):
        network, architecture = self.fitted
        save_classifier(folder, network, architecture, provenance)


@CLASSIFIERS.register
class CNN(_CNN):
    """Conv5_FC3 3D CNN with the study's classifier_training learning rate and weight decay."""

    name = "cnn"

    def architecture(self, context):
        training = context.config.classifier_training
        return CNNArchitecture(learning_rate=training.learning_rate, weight_decay=training.weight_decay)


@CLASSIFIERS.register
class OptimizedCNN(_CNN):
    """3D CNN whose architecture the study's random search chose (search: section)."""

    name = "cnn-optimized"
    needs_search = True

    def architecture(self, context):
        return context.optimized
