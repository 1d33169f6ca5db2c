"""One study task = (classifier, training-set condition, run): build the training set, train,
evaluate on the test split (and independent cohorts; the real-only classifier also on each
sampler's synthetic pool, the GAN-test of thesis Table 1.2), write the task's folder.

Task folder ``runs/<classifier>/<condition>/run-<r>/``: ``predictions.tsv`` (ClinicaDL-like
columns), ``training_log.tsv`` and ``model/`` (CNNs: the selected weights, :mod:`medaug.study.saved_classifiers`)
and ``metrics.tsv``, written last, which marks it done.
Beside it, ``run-<r>.inputs.json`` records what defines the result (:func:`task_inputs`): a task
whose classifier settings, images or synthetic pool changed is run again.
Run ``r`` uses seed ``config.seed + r`` for the network, the data order and classic augmentation.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medaug.compute import precision_record
from medaug.data.splits import assert_disjoint
from medaug.data.volumes import Volumes
from medaug.io import write_tsv
from medaug.sampling.synthetic_dataset import label_token
from medaug.run_folder import StepRecord
from medaug.study.classifiers import CLASSIFIERS, FitContext, build_classifier
from medaug.study.conditions import CONDITIONS, Condition
from medaug.study.config import StudyConfig
from medaug.study.data import ImageSet, StudyData
from medaug.study.metrics import classification_metrics
from medaug.study.saved_classifiers import MODEL_DIR, MODEL_FORMAT, ClassifierProvenance
from medaug.study.search import CNNArchitecture
from medaug.study.training_sets import build_training_set

logger = logging.getLogger(__name__)
METRICS_FILE = "metrics.tsv"


@dataclass(frozen=True)
class StudyTask:
    classifier: str
    condition: Condition
    run: int

    @property
    def folder(self) -> Path:
        return Path("runs") / self.classifier / self.condition.name / f"run-{self.run:02d}"

    def record(self, context: StudyContext, run_dir: Path) -> StepRecord:
        """The task's :class:`~medaug.run_folder.StepRecord`, beside its folder."""
        folder = run_dir / self.folder
        return StepRecord(folder.with_name(f"{folder.name}.inputs.json"), task_inputs(self, context))


@dataclass
class StudyContext:
    """Everything a task reads: the config, image sets, synthetic pools and the searched CNN."""

    config: StudyConfig
    data: StudyData
    pools: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    pool_fingerprints: dict[str, str] = field(default_factory=dict)
    optimized: CNNArchitecture | None = None


def training_settings(options, config: StudyConfig):
    """A classifier's ``training`` options on the study's device and precision (None: it has none)."""
    training = getattr(options, "training", None)
    return None if training is None else dataclasses.replace(training, device=config.device,
                                                              mixed_precision=config.mixed_precision)


def task_inputs(task: StudyTask, context: StudyContext) -> dict:
    """What defines a task's result: classifier with options and training settings (on the study's
    device), condition, seed, image-set fingerprints, the pools it trains or is scored on, the
    searched architecture (whose search settings its record holds)."""
    config, data = context.config, context.data
    kind = CONDITIONS.get(task.condition.kind)
    pools = sorted(context.pools) if kind.gan_test else [task.condition.sampler] if kind.uses_synthetic else []
    classifier = CLASSIFIERS.get(task.classifier)
    saved = {"model_format": MODEL_FORMAT} if classifier.saves_model else {}
    options = config.classifier(task.classifier).parsed()
    training = training_settings(options, config)
    return {**saved, "classifier": task.classifier,
            "options": {k: v for k, v in options.to_dict().items() if k not in ("training", "search")},
            "training": None if training is None else training.to_dict(),
            "condition": dataclasses.asdict(task.condition),
            "labels": list(config.data.labels), "positive": config.data.positive, "seed": config.seed + task.run,
            "images": {name: image_set.fingerprint for name, image_set in
                       {"train": data.train, "validation": data.validation, "test": data.test,
                        **data.independent}.items()},
            "pools": {name: context.pool_fingerprints.get(name) for name in pools},
            "architecture": context.optimized.to_dict() if classifier.needs_search else None,
            **precision_record(config.device, config.mixed_precision)}


def study_tasks(config: StudyConfig) -> list[StudyTask]:
    """Run-major order: an interrupted study has complete, paired runs of every condition."""
    conditions = config.study_conditions()
    return [StudyTask(spec.name, condition, run) for run in range(config.runs) for spec in config.classifiers
            for condition in conditions]


def _evaluation_sets(context: StudyContext, task: StudyTask) -> dict[str, ImageSet]:
    sets = {"test": context.data.test, **context.data.independent}
    if CONDITIONS.get(task.condition.kind).gan_test:
        for sampler, pool in context.pools.items():
            rows, labels = [], []
            for code, label in enumerate(context.config.data.labels):
                rows += [{"participant_id": f"sub-synth{label_token(label)}{i + 1:04d}", "session_id": "n/a",
                          "diagnosis": label}
                         for i in range(len(pool[code]))]
                labels.append(torch.full((len(pool[code]),), code))
            sets[f"synthetic-{sampler}"] = ImageSet(pd.DataFrame(rows), Volumes.concat(pool[c] for c in sorted(pool)),
                                                    torch.cat(labels))
    return sets


def _save_model(classifier, task: StudyTask, context: StudyContext, run_dir: Path, train, seed: int,
                log: pd.DataFrame) -> None:
    """Keep the task's selected model (``model/`` in its folder) with what it was trained for and on."""
    config = context.config
    best = int(log["val_balanced_accuracy"].to_numpy().argmax())  # the epoch train_classifier kept (first best)
    classifier.save(run_dir / task.folder / MODEL_DIR, ClassifierProvenance(
        classifier=task.classifier, condition=task.condition.name, run=task.run, seed=seed,
        labels=tuple(config.data.labels), positive=config.data.positive,
        input_shape=tuple(train.images.shape[1:]), preprocessing=config.preprocessing.to_dict(),
        training_set=task.record(context, run_dir).fingerprint,
        val_balanced_accuracy=float(log["val_balanced_accuracy"].iloc[best]), epoch=int(log["epoch"].iloc[best])))


def run_task(task: StudyTask, context: StudyContext, run_dir: Path) -> pd.DataFrame:
    """Train and evaluate one task and write its folder; returns its metrics rows."""
    config, data = context.config, context.data
    seed = config.seed + task.run
    assert_disjoint(train=data.train.rows, validation=data.validation.rows, test=data.test.rows)
    condition = task.condition
    train = build_training_set(data.train.images, data.train.labels, condition,
                               synthetic=context.pools.get(condition.sampler), seed=seed)
    sets = _evaluation_sets(context, task)
    classifier = build_classifier(task.classifier, config.classifier(task.classifier).parsed())
    fit = FitContext(labels=tuple(config.data.labels), validation=data.validation, device=config.device,
                     mixed_precision=config.mixed_precision, architecture=context.optimized)
    probabilities, log = classifier.fit_predict(fit, train, seed, sets)
    if classifier.saves_model:
        _save_model(classifier, task, context, run_dir, train, seed, log)
    names = np.array(config.data.labels)
    positive = config.data.labels.index(config.data.positive)
    predictions, metrics = [], []
    for name, image_set in sets.items():
        proba = probabilities[name]
        predicted = names[proba.argmax(1)]
        truth = names[image_set.labels.numpy()]
        table = image_set.rows[["participant_id", "session_id"]].reset_index(drop=True).assign(
            test_set=name, true_label=truth, predicted_label=predicted,
            **{f"proba_{label}": proba[:, i] for i, label in enumerate(names)})
        predictions.append(table)
        scores = classification_metrics(truth, predicted, proba[:, positive], positive=config.data.positive)
        metrics.append({"classifier": task.classifier, "condition": condition.name, "kind": condition.kind,
                        "sampler": condition.sampler or "n/a", "synthetic_per_class": condition.per_class,
                        "copies": condition.copies, "run": task.run, "seed": seed, "test_set": name,
                        "n_train": len(train.images), "n_train_synthetic": int(train.synthetic.sum()), **scores})
    folder = run_dir / task.folder
    write_tsv(folder / "predictions.tsv", pd.concat(predictions, ignore_index=True))
    if log is not None:
        write_tsv(folder / "training_log.tsv", log)
    frame = pd.DataFrame(metrics)
    write_tsv(folder / METRICS_FILE, frame)
    test = frame[frame["test_set"] == "test"].iloc[0]
    logger.info("%s %s run %d: test balanced accuracy %.3f", task.classifier, condition.name, task.run,
                test["balanced_accuracy"])
    return frame
