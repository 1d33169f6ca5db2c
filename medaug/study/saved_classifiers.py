"""A study's saved classifiers and which of them the validation split selects (never the test split).

Each CNN task keeps its selected weights (the epoch of best validation balanced accuracy, thesis
§1.5.5) in ``runs/<classifier>/<condition>/run-<r>/model/``: ``config.json`` (architecture, input
shape, class count), ``model.pt`` (state dict, read back with ``weights_only=True``) and
``provenance.json`` (:class:`ClassifierProvenance`: labels, positive class, preprocessing, the
task's training-set fingerprint, validation score). ``models.tsv`` at the study's root lists every
saved model with its validation balanced accuracy and marks, per classifier, the best run of each
condition and the best condition (highest mean over runs, compared to 9 decimals); ties go to the
earlier condition in config order (``real`` first), the earlier run and the classifier listed
first. Test scores are listed beside, never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from medaug import __version__
from medaug.configuration import Config
from medaug.errors import ConfigError, InputDataError
from medaug.generative.persistence import load_model_folder
from medaug.io import write_json, write_torch
from medaug.provenance import PROVENANCE_FILE, read_json_object
from medaug.study.search import CNNArchitecture

MODEL_DIR = "model"
MODELS_FILE = "models.tsv"
MODEL_FORMAT = 1  # in task records: task folders from before models were saved are run again
_FIX = "rerun `medaug run` on the study's config: a task whose model is incomplete is trained again"
SCORE_DECIMALS = 9  # validation scores compared after rounding: means of equal scores tie exactly


@dataclass
class ClassifierProvenance(Config):
    """What a saved classifier was trained for and on (its ``provenance.json``)."""

    section: ClassVar[str] = "classifier provenance"

    classifier: str
    condition: str
    run: int
    seed: int
    labels: tuple[str, str]
    positive: str
    input_shape: tuple[int, ...]
    preprocessing: dict          # the study's preprocessing section (enabled, size, pipeline)
    training_set: str            # fingerprint of the task's inputs: images, pools, condition, options
    val_balanced_accuracy: float
    epoch: int                   # the selected epoch
    medaug_version: str = __version__
    torch_version: str = torch.__version__


@dataclass
class SavedClassifier:
    """A saved classifier folder: its provenance and, on demand, the network."""

    folder: Path
    provenance: ClassifierProvenance

    @property
    def name(self) -> str:
        """``<classifier>/<condition>/run-<r>``: which model predicted, in output tables."""
        p = self.provenance
        return f"{p.classifier}/{p.condition}/run-{p.run:02d}"

    def network(self, device: str | torch.device = "cpu") -> nn.Module:
        """The network in evaluation mode on ``device`` (weights read with ``weights_only=True``)."""
        return load_model_folder(self.folder, lambda config: _build(config, self.folder), device, fix=_FIX)


def _build(config: dict, folder: Path) -> nn.Module:
    try:
        architecture = CNNArchitecture.from_dict(config["architecture"])
        return architecture.build(tuple(config["input_shape"]), classes=int(config["classes"]))
    except (KeyError, TypeError) as error:
        raise ConfigError(f"{folder / 'config.json'} lacks {error}") from None


def save_classifier(folder: str | os.PathLike, network: nn.Module, architecture: CNNArchitecture,
                    provenance: ClassifierProvenance) -> Path:
    """Write the model folder atomically file by file, provenance last (its presence marks it whole)."""
    folder = Path(folder)
    write_json(folder / "config.json", {"architecture": architecture.to_dict(),
                                        "input_shape": list(provenance.input_shape),
                                        "classes": len(provenance.labels)})
    write_torch(folder / "model.pt", {k: v.detach().cpu() for k, v in network.state_dict().items()})
    write_json(folder / PROVENANCE_FILE, provenance.to_dict())
    return folder


def model_complete(folder: Path) -> bool:
    """Whether a model folder holds all its files (provenance is written last) and they read back."""
    if not all((folder / name).is_file() for name in ("config.json", "model.pt", PROVENANCE_FILE)):
        return False
    try:
        load_classifier(folder).network()
    except InputDataError:
        return False
    return True


def load_classifier(folder: str | os.PathLike) -> SavedClassifier:
    """A saved classifier folder (its provenance read now, the weights when the network is asked for)."""
    folder = Path(folder)
    path = folder / PROVENANCE_FILE
    recorded = read_json_object(path, _FIX)
    known = {f.name for f in dataclasses.fields(ClassifierProvenance)}  # keys of newer versions are ignored
    try:
        provenance = ClassifierProvenance.from_dict({k: v for k, v in recorded.items() if k in known})
    except ConfigError as error:
        raise InputDataError(f"{path} is not a classifier provenance ({error}); {_FIX}") from None
    return SavedClassifier(folder, provenance)


def model_table(run_dir: Path, tasks, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per task with a saved model: validation and test balanced accuracy, ``best_run`` (per
    classifier and condition) and ``best_condition`` (per classifier), both chosen on validation."""
    test = metrics[metrics["test_set"] == "test"].set_index(["classifier", "condition", "run"])["balanced_accuracy"]
    rows = []
    for order, task in enumerate(tasks):
        folder = run_dir / task.folder / MODEL_DIR
        if (folder / PROVENANCE_FILE).is_file():
            saved = load_classifier(folder)
            rows.append({"classifier": task.classifier, "condition": task.condition.name, "run": task.run,
                         "val_balanced_accuracy": saved.provenance.val_balanced_accuracy,
                         "test_balanced_accuracy": test.get((task.classifier, task.condition.name, task.run),
                                                            np.nan),
                         "epoch": saved.provenance.epoch, "path": str(task.folder / MODEL_DIR), "_order": order})
    columns = ["classifier", "condition", "run", "val_balanced_accuracy", "test_balanced_accuracy", "epoch",
               "best_run", "best_condition", "path"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows)
    # config order: classifiers and conditions as they first appear in the (run-major) task list
    for key, keys in (("_classifier_order", ["classifier"]), ("_condition_order", ["classifier", "condition"])):
        table[key] = table.groupby(keys)["_order"].transform("min")
    table = table.sort_values(["_classifier_order", "_condition_order", "run"], kind="stable").reset_index(drop=True)
    score = table["val_balanced_accuracy"].round(SCORE_DECIMALS)
    best_runs = score.groupby([table["classifier"], table["condition"]], sort=False).idxmax()
    table["best_run"] = table.index.isin(best_runs)
    means = table.groupby(["classifier", "condition"], sort=False)["val_balanced_accuracy"].mean().reset_index()
    means["score"] = means["val_balanced_accuracy"].round(SCORE_DECIMALS)
    best_conditions = means.loc[means.groupby("classifier", sort=False)["score"].idxmax()]
    best = set(zip(best_conditions["classifier"], best_conditions["condition"]))
    table["best_condition"] = [(c, k) in best for c, k in zip(table["classifier"], table["condition"])]
    return table[columns]


def select_classifiers(study_dir: str | os.PathLike, classifier: str | None = None, condition: str | None = None,
                       ensemble: bool = False) -> list[SavedClassifier]:
    """The saved models a prediction uses: of ``classifier`` (default: the one whose best condition
    scores highest on validation) and ``condition`` (default: its best condition), the best run by
    validation, or every run with ``ensemble``."""
    study_dir = Path(study_dir)
    path = study_dir / MODELS_FILE
    if not path.is_file():
        raise InputDataError(f"{study_dir} has no {MODELS_FILE}: it is not a finished study, or it ran before "
                             "medaug saved classifiers; rerun `medaug run` on its config (tasks are retrained "
                             "and their models saved)")
    table = pd.read_csv(path, sep="\t", keep_default_na=False)
    if table.empty:
        raise InputDataError(f"{path} lists no saved classifier: only CNN classifiers are saved "
                             "(scikit-learn models would need pickle, which is unsafe to load)")
    table["best_run"] = table["best_run"].astype(str) == "True"
    table["best_condition"] = table["best_condition"].astype(str) == "True"
    if classifier is None:  # ties: the classifier listed first in the study's config
        best = table[table["best_condition"]]
        means = best.groupby("classifier", sort=False)["val_balanced_accuracy"].mean().round(SCORE_DECIMALS)
        classifier = str(means.idxmax())
    chosen = table[table["classifier"] == classifier]
    if chosen.empty:
        raise ConfigError(f"{study_dir} has no saved {classifier!r} classifier; saved: "
                          f"{', '.join(dict.fromkeys(table['classifier']))}")
    if condition is None:
        condition = str(chosen.loc[chosen["best_condition"], "condition"].iloc[0])
    rows = chosen[chosen["condition"] == condition]
    if rows.empty:
        raise ConfigError(f"{study_dir} has no {classifier} model of condition {condition!r}; conditions: "
                          f"{', '.join(dict.fromkeys(chosen['condition']))}")
    if not ensemble:
        rows = rows[rows["best_run"]]
    return [load_classifier(study_dir / p) for p in rows["path"]]


TRAINING_IMAGES_FILE = "training_images.tsv"


def image_sha256(image: torch.Tensor) -> str:
    """SHA-256 of a model input (float32 bytes): the same source preprocessed the same way (CPU
    preprocessing is deterministic) hashes the same under any file name or subject id."""
    return hashlib.sha256(np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32).tobytes()).hexdigest()


def training_images_table(sets: dict[str, object]) -> pd.DataFrame:
    """The images the study's models were fitted or selected on (``{split: ImageSet}``), with
    :func:`image_sha256`: ``medaug predict`` refuses them."""
    rows = []
    for split, image_set in sets.items():
        for index, row in enumerate(image_set.rows.to_dict("records")):
            rows.append({"participant_id": row["participant_id"], "session_id": row["session_id"], "split": split,
                         "image_sha256": image_sha256(image_set.images[index])})
    return pd.DataFrame(rows, columns=["participant_id", "session_id", "split", "image_sha256"])
