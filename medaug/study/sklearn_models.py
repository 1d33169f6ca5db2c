"""scikit-learn classifiers on down-sampled, flattened images (thesis Fig. 1.5: MLP, random
forest, k-NN, SVM), each behind a standard scaler."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from medaug.data.volumes import Volumes
from medaug.errors import ConfigError

DOWNSAMPLE_VOXELS = 4096  # flattened features after average pooling (about 16×16×16)


def downsample(images, voxels: int = DOWNSAMPLE_VOXELS, batch_size: int = 64) -> np.ndarray:
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


def sklearn_classifier(name: str, seed: int) -> Pipeline:
    """The named model with library defaults except a fixed ``random_state`` and probability
    outputs (the SVM's through sigmoid calibration on 3 folds)."""
    models = {"svm": lambda: CalibratedClassifierCV(SVC(random_state=seed), cv=3, ensemble=False),
              "random_forest": lambda: RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1),
              "knn": lambda: KNeighborsClassifier(n_neighbors=5),
              "mlp": lambda: MLPClassifier(hidden_layer_sizes=(256, 64), max_iter=500, early_stopping=True,
                                           random_state=seed)}
    if name not in models:
        raise ConfigError(f"unknown scikit-learn classifier {name!r}; choose among {', '.join(models)}")
    return make_pipeline(StandardScaler(), models[name]())
