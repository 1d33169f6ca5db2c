"""scikit-learn classifiers on down-sampled, flattened images (thesis Fig. 1.5: MLP, random
forest, k-NN, SVM), each behind a standard scaler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from medaug.configuration import Config, check_at_least
from medaug.compute import INFERENCE_BATCH
from medaug.data.volumes import Volumes
from medaug.errors import ConfigError
from medaug.study.classifiers import CLASSIFIERS, Classifier

DOWNSAMPLE_VOXELS = 4096  # flattened features after average pooling (about 16×16×16)


def downsample(images, voxels: int = DOWNSAMPLE_VOXELS, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
    """Average-pool (N, C, *spatial) by the smallest integer factor leaving ≤ ``voxels`` voxels,
    flatten; images (a tensor or streamed :class:`Volumes`) are read ``batch_size`` at a time."""
    volumes = Volumes.of(images)
    spatial = volumes.shape[2:]
    factor = 1
    while np.prod([max(1, s // factor) for s in spatial]) > voxels:
        factor += 1
    pool = torch.nn.functional.avg_pool3d if len(spatial) == 3 else torch.nn.functional.avg_pool2d
    return np.concatenate([(pool(batch, factor, ceil_mode=True) if factor > 1 else batch).flatten(1).numpy()
                           for batch in volumes.batches(batch_size)])


class _ScikitLearn(Classifier):
    """A scikit-learn model on :func:`downsample` d images, behind a standard scaler, seeded by the run."""

    def model(self, seed: int):
        raise NotImplementedError

    def pipeline(self, seed: int):
        """The scaler and the model, unfitted."""
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), self.model(seed))

    def probabilities(self, model, features: np.ndarray) -> np.ndarray:
        """(N, 2) class probabilities of the fitted pipeline."""
        return model.predict_proba(features)

    def fit_predict(self, fit, train, seed, sets):
        model = self.pipeline(seed)
        model.fit(downsample(train.images), train.labels.numpy())
        return {name: self.probabilities(model, downsample(s.images)) for name, s in sets.items()}, None


@dataclass
class SVMOptions(Config):
    section: ClassVar[str] = "sklearn-svm options"
    C: float = 1.0

    def validate(self) -> None:
        if self.C <= 0:
            raise ConfigError(f"{self.section}.C must be > 0, got {self.C}")


@CLASSIFIERS.register
class SVM(_ScikitLearn):
    """RBF support-vector machine; p(positive) = σ(f(x)) of its decision function f, so that the
    predicted class is the SVM's own (f > 0). Platt calibration on cross-validation folds was
    dropped: on 40 training images its fitted slope came out inverted and turned a 67% SVM into
    23% (the demo cohort); the study reports ranks (AUC) and labels, not calibrated probabilities."""

    name = "sklearn-svm"
    Options = SVMOptions

    def model(self, seed):
        from sklearn.svm import SVC

        return SVC(C=self.options.C)  # deterministic: no seed to take

    def probabilities(self, model, features):
        from scipy.special import expit

        positive = expit(model.decision_function(features))
        return np.stack([1.0 - positive, positive], axis=1)


@dataclass
class ForestOptions(Config):
    section: ClassVar[str] = "sklearn-random_forest options"
    n_estimators: int = 300

    def validate(self) -> None:
        check_at_least(self, n_estimators=1)


@CLASSIFIERS.register
class RandomForest(_ScikitLearn):
    """Random forest of ``n_estimators`` trees."""

    name = "sklearn-random_forest"
    Options = ForestOptions

    def model(self, seed):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=self.options.n_estimators, random_state=seed, n_jobs=1)


@dataclass
class NeighboursOptions(Config):
    section: ClassVar[str] = "sklearn-knn options"
    n_neighbors: int = 5

    def validate(self) -> None:
        check_at_least(self, n_neighbors=1)


@CLASSIFIERS.register
class NearestNeighbours(_ScikitLearn):
    """k-nearest-neighbour vote."""

    name = "sklearn-knn"
    Options = NeighboursOptions

    def model(self, seed):
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=self.options.n_neighbors)


@dataclass
class PerceptronOptions(Config):
    section: ClassVar[str] = "sklearn-mlp options"
    hidden: tuple[int, ...] = (256, 64)
    max_iter: int = 500

    def validate(self) -> None:
        check_at_least(self, hidden=1, max_iter=1)


@CLASSIFIERS.register
class Perceptron(_ScikitLearn):
    """Multi-layer perceptron with early stopping."""

    name = "sklearn-mlp"
    Options = PerceptronOptions

    def model(self, seed):
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(hidden_layer_sizes=self.options.hidden, max_iter=self.options.max_iter,
                             early_stopping=True, random_state=seed)
