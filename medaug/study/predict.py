"""Apply a study's saved classifiers to new subjects (``medaug predict``).

New images are preprocessed exactly as the study's were (its ``preprocessing`` section, into
``OUT/caps``), or read from a CAPS tree of Clinica's ``t1-linear`` (resized and rescaled like the
study's). An image is refused when it fails QC, when its subject was in the study's train or
validation split, or when it is, voxel for voxel, one of those images under another name
(:func:`~medaug.study.saved_classifiers.image_sha256`). ``OUT/predictions.tsv`` holds per image the class
probabilities, the predicted label, the QC status, the refusal reason and the model(s) that
predicted; with ``ensemble`` the probabilities are the mean over the condition's runs. When the
images have diagnoses, ``OUT/metrics.tsv`` holds the study report's metrics on one image per
subject (its earliest session) with a bootstrap 95% CI (subjects resampled within label), beside
the same models' metrics on the study's test set, computed the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medaug.compute import INFERENCE_BATCH, resolve_device
from medaug.data.clinica import read_caps_t1_linear, read_labels
from medaug.data.cohort import load_cohort
from medaug.data.selection import baseline_sessions, match_labels
from medaug.errors import InputDataError, OutputExistsError
from medaug.io import write_tsv
from medaug.preprocessing.images import image_stream
from medaug.preprocessing.runner import preprocess_cohort
from medaug.provenance import read_json_object
from medaug.output_folder import check_output, claim_output
from medaug.run_folder import FolderLock
from medaug.study.network_training import predict_proba
from medaug.study.config import StudyConfig, load_study
from medaug.study.metrics import classification_metrics
from medaug.study.saved_classifiers import TRAINING_IMAGES_FILE, SavedClassifier, image_sha256, select_classifiers
from medaug.study.report import balanced_accuracy_ci

logger = logging.getLogger(__name__)
PREDICTIONS_FILE = "predictions.tsv"
METRICS_FILE = "metrics.tsv"
PREDICT_MARKER = ".medaug-predict.json"


@dataclass
class Prediction:
    """The per-image table, the metrics (None without diagnoses) and the models that predicted."""

    predictions: pd.DataFrame
    metrics: pd.DataFrame | None
    models: list[str]


def _check_output(out: Path, study_dir: Path, source: Path) -> dict:
    """Refuse an output inside the study or the input, a folder of other files, or one holding the
    predictions of another study or input; returns what the marker records."""
    marker = {"study": str(study_dir.resolve()), "source": str(source.resolve())}
    check_output(out, "predict", inputs=[study_dir, source], marker=PREDICT_MARKER)
    if (out / PREDICT_MARKER).is_file():
        recorded = read_json_object(out / PREDICT_MARKER, "give an empty or new output folder")
        if {key: recorded.get(key) for key in marker} != marker:
            raise OutputExistsError(f"{out} holds predictions of {recorded.get('study')} on "
                                    f"{recorded.get('source')}; give a new output folder for another study or input")
    return marker


def _caps_images(source: Path, labels: pd.DataFrame | None) -> pd.DataFrame:
    """The images of a CAPS tree of Clinica's t1-linear (on its crop grid), with their diagnoses
    where ``labels`` (participant_id, session_id, diagnosis) has them."""
    rows = read_caps_t1_linear(source, labels)
    if "diagnosis" not in rows:
        rows["diagnosis"] = np.nan
    return rows.assign(qc_status="not checked (CAPS input)", reason="")


def _bids_images(config: StudyConfig, source: Path, labels: pd.DataFrame | None, out: Path,
                 jobs: int) -> pd.DataFrame:
    """participant_id, session_id, diagnosis, qc_status, reason, path (model-ready image or None)
    of a BIDS dataset, preprocessed as the study's were."""
    rows = load_cohort(source, require_diagnosis=False)
    if labels is not None:
        rows = rows.drop(columns="diagnosis").merge(labels, on=["participant_id", "session_id"], how="left")
    if not config.preprocessing.enabled:  # the study read images already in template space
        return rows.assign(qc_status="not checked (preprocessing disabled)", reason="")
    if config.data.caps is not None:
        logger.warning("the study read Clinica's t1-linear outputs (%s); these images are preprocessed by medaug's "
                       "t1-linear instead, which is not identical: give their CAPS folder for the study's own "
                       "preprocessing", config.data.caps)
    qc = preprocess_cohort(rows, out / "caps", config.t1_linear(), sources=[source], jobs=jobs)
    resized = read_caps_t1_linear(out / "caps", resolution="x".join(map(str, config.preprocessing.size)))
    qc = qc[["participant_id", "session_id", "status", "reason"]].rename(columns={"status": "qc_status"})
    rows = rows.drop(columns="path").merge(qc, on=["participant_id", "session_id"], how="left")
    rows = rows.merge(resized[["participant_id", "session_id", "path"]], on=["participant_id", "session_id"],
                      how="left")
    rows.loc[rows["qc_status"] != "ok", "path"] = None
    return rows


def _refusals(rows: pd.DataFrame, image_hashes: dict[int, str], study_dir: Path) -> pd.Series:
    """Why each image may not be predicted ('' where it may): QC, or the study fitted / selected on
    it (``image_hashes``: row → :func:`image_sha256` of each usable image)."""
    path = study_dir / TRAINING_IMAGES_FILE
    if not path.is_file():
        raise InputDataError(f"{path} not found: the study's training images are unknown; rerun `medaug run`")
    seen = pd.read_csv(path, sep="\t", keep_default_na=False)
    subjects = seen.drop_duplicates("participant_id").set_index("participant_id")["split"]
    hashes = {h: f"{p} {s}" for h, p, s in zip(seen["image_sha256"], seen["participant_id"], seen["session_id"])}
    reasons = []
    for index, row in rows.iterrows():
        if row["participant_id"] in subjects.index:
            reasons.append(f"subject was in the study's {subjects[row['participant_id']]} split")
        elif index not in image_hashes:
            reasons.append(f"QC {row['qc_status']}: {row['reason'] or 'no preprocessed image'}")
        elif image_hashes[index] in hashes:
            reasons.append(f"identical to the study's training image {hashes[image_hashes[index]]}")
        else:
            reasons.append("")
    return pd.Series(reasons, index=rows.index)


def _probabilities(models: list[SavedClassifier], rows: pd.DataFrame, size, device: str) -> np.ndarray:
    """Mean over ``models`` of their softmax probabilities (one model: its own) on the images of
    ``rows``, read ``INFERENCE_BATCH`` at a time."""
    networks = [model.network(device) for model in models]
    parts = []
    for start in range(0, len(rows), INFERENCE_BATCH):
        images = torch.stack(list(image_stream(rows.iloc[start:start + INFERENCE_BATCH], size)))
        parts.append(np.mean([predict_proba(network, images) for network in networks], axis=0))
    return np.concatenate(parts)


def _scores(name: str, truth: pd.Series, probabilities: pd.DataFrame, labels: tuple[str, str], positive: str,
            seed: int) -> dict:
    """The study report's metrics of one prediction per subject, with a bootstrap 95% CI of the
    balanced accuracy (subjects resampled within label)."""
    predicted = np.array(labels)[probabilities[[f"proba_{label}" for label in labels]].to_numpy().argmax(1)]
    scores = classification_metrics(truth, predicted, probabilities[f"proba_{positive}"], positive=positive)
    _, low, high = balanced_accuracy_ci((truth.to_numpy() == predicted)[None], truth.to_numpy(), seed=seed)
    counts = truth.value_counts()
    return {"test_set": name, "subjects": len(truth), **{f"n_{label}": int(counts.get(label, 0)) for label in labels},
            **scores, "ci_low": low, "ci_high": high}


def _metrics(table: pd.DataFrame, study_dir: Path, models: list[SavedClassifier], labels: tuple[str, str],
             positive: str, seed: int) -> pd.DataFrame | None:
    """Metrics on the predicted, diagnosed subjects (their earliest predicted session, as the study's
    test set holds baselines), beside the same models' metrics on the study's test set (their
    probabilities averaged like these)."""
    scored = table[(table["status"] == "predicted") & table["true_label"].isin(labels)]
    scored = baseline_sessions(scored)
    if scored["true_label"].nunique() < 2:
        return None
    columns = [f"proba_{label}" for label in labels]
    rows = [_scores("new subjects", scored["true_label"], scored, labels, positive, seed)]
    runs = [pd.read_csv(model.folder.parent / "predictions.tsv", sep="\t").query("test_set == 'test'")
            .set_index(["participant_id", "session_id"]) for model in models]
    mean = sum(run[columns] for run in runs) / len(runs)
    rows.append(_scores(f"study test set, {len(runs)} model{'s' if len(runs) > 1 else ''}", runs[0]["true_label"],
                        mean, labels, positive, seed))
    return pd.DataFrame(rows)


def predict(study_dir: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike, *,
            classifier: str | None = None, condition: str | None = None, ensemble: bool = False,
            labels_tsv: str | None = None, jobs: int = 1, device: str = "cpu") -> Prediction:
    """Predict the diagnosis of every image of ``source`` (BIDS or CAPS) with the study's saved
    classifier(s); write ``out/predictions.tsv`` (and ``out/metrics.tsv`` for diagnosed images)."""
    study_dir, source, out = Path(study_dir), Path(source), Path(out)
    device = resolve_device(device)  # CUDA that this torch cannot reach: refused with the fix, before any work
    if not source.is_dir():
        raise InputDataError(f"{source} not found: give a BIDS dataset or a CAPS folder")
    marker = _check_output(out, study_dir, source)
    config = load_study(study_dir)
    models = select_classifiers(study_dir, classifier, condition, ensemble)
    for model in models:
        if model.provenance.preprocessing != config.preprocessing.to_dict():
            raise InputDataError(f"{model.folder} was trained on images preprocessed otherwise than "
                                 f"{study_dir / 'config.yaml'} says; rerun `medaug run` on the study")
    # the inputs that need no preprocessing are read (and checked) before anything is written
    labels = read_labels(labels_tsv)[["participant_id", "session_id", "diagnosis"]] if labels_tsv else None
    caps = _caps_images(source, labels) if (source / "subjects").is_dir() else None
    with FolderLock(out, "medaug predict"):
        claim_output(out, "predict", inputs=[study_dir, source], marker=PREDICT_MARKER, record=marker)
        for name in (PREDICTIONS_FILE, METRICS_FILE):  # an earlier run's results never outlive a failed rerun
            (out / name).unlink(missing_ok=True)
        rows = caps if caps is not None else _bids_images(config, source, labels, out, jobs)
        rows = rows.reset_index(drop=True)
        if "age" not in rows:  # a CAPS input without a labels TSV
            rows["age"] = np.nan
        rows["diagnosis"] = match_labels(rows["diagnosis"], config.data.labels)
        usable = rows.index[rows["path"].notna()]
        size = config.preprocessing.size
        hashes = {index: image_sha256(image) for index, image in zip(usable, image_stream(rows.loc[usable], size))}
        rows["reason"] = _refusals(rows.fillna({"reason": ""}), hashes, study_dir)
        accepted = [i for i in usable if not rows.at[i, "reason"]]
        names = [model.name for model in models]
        table = rows[["participant_id", "session_id", "age"]].assign(
            true_label=rows["diagnosis"].fillna("n/a"), qc_status=rows["qc_status"].fillna("not preprocessed"),
            status=np.where(rows["reason"] == "", "predicted", "refused"), reason=rows["reason"],
            predicted_label="n/a", **{f"proba_{label}": np.nan for label in config.data.labels},
            models=" ".join(names) if len(names) > 1 else names[0])
        for index, reason in rows.loc[rows["reason"] != "", "reason"].items():
            logger.warning("%s %s refused: %s", rows.at[index, "participant_id"], rows.at[index, "session_id"], reason)
        if accepted:
            probabilities = _probabilities(models, rows.loc[accepted], size, device)
            for column, label in enumerate(config.data.labels):
                table.loc[accepted, f"proba_{label}"] = probabilities[:, column]
            table.loc[accepted, "predicted_label"] = np.array(config.data.labels)[probabilities.argmax(1)]
        write_tsv(out / PREDICTIONS_FILE, table)
        metrics = _metrics(table, study_dir, models, config.data.labels, config.data.positive, config.seed)
        if metrics is not None:
            write_tsv(out / METRICS_FILE, metrics)
            for row in metrics.itertuples():
                logger.info("balanced accuracy on the %s (%d subjects): %.3f [%.3f, %.3f]", row.test_set,
                            row.subjects, row.balanced_accuracy, row.ci_low, row.ci_high)
        logger.info("%d of %d image(s) predicted by %s; %s", len(accepted), len(table), ", ".join(names),
                    out / PREDICTIONS_FILE)
        if not accepted:
            raise InputDataError(f"none of the {len(table)} image(s) of {source} could be predicted (reasons in "
                                 f"{out / PREDICTIONS_FILE}: QC failures, or subjects the study trained on)")
        return Prediction(table, metrics, names)
