"""``medaug interpret``: saliency maps of a study's saved CNNs on its test subjects
(:mod:`medaug.study.saliency`), per condition: by default real-only and the augmented condition
(real + synthetic, or classic augmentation) that scores best on validation (``models.tsv``), so
that the two can be compared. Each condition's maps are redone only when its models, the test
images or the method change (``interpret/<classifier>/<condition>/<method>.inputs.json``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from medaug.data.volumes import VolumeFile, Volumes
from medaug.errors import ConfigError, InputDataError
from medaug.logs import allow
from medaug.preprocessing.images import resized_affine
from medaug.run_folder import FolderLock, StepRecord, file_signature
from medaug.study.html_report import template_on_study_grid
from medaug.study.saved_classifiers import MODELS_FILE, select_classifiers
from medaug.study.config import StudyConfig, load_study
from medaug.study.saliency import INTERPRET_DIR, METHODS, OVERLAY_FILE, Method, interpret_condition


SALIENCY_FORMAT = 1  # in the step records: maps written by an older medaug are redone


def default_conditions(study_dir: Path, config: StudyConfig, classifier: str) -> list[str]:
    """``real`` and the augmented condition (any kind but real-only and synthetic-only) with the
    best mean validation score, when the study has one."""
    augmented = {c.name for c in config.study_conditions() if c.kind not in ("real", "synthetic")}
    table = pd.read_csv(study_dir / MODELS_FILE, sep="\t", keep_default_na=False)
    table = table[(table["classifier"] == classifier) & table["condition"].isin(augmented)]
    means = table.groupby("condition", sort=False)["val_balanced_accuracy"].mean().round(9)
    return ["real", *([str(means.idxmax())] if len(means) else [])]


def split_images(study_dir: Path, split: str, size: tuple[int, ...]) -> tuple[pd.DataFrame, VolumeFile]:
    """The listing and image stack of one split of a study (``images/<split>.tsv`` / ``.npy``); a
    stack that is not one ``size`` image per listed row (a replaced or damaged file) is refused."""
    listing, stack = study_dir / "images" / f"{split}.tsv", study_dir / "images" / f"{split}.npy"
    if not (listing.is_file() and stack.is_file()):
        raise InputDataError(f"{study_dir} has no {split} image stack ({stack}); rerun `medaug run` on the study")
    rows, volumes = pd.read_csv(listing, sep="\t", dtype=str, keep_default_na=False), VolumeFile(stack)
    if volumes.shape[0] != len(rows) or volumes.shape[2:] != tuple(size):
        raise InputDataError(f"{stack} holds {volumes.shape[0]} image(s) of {'×'.join(map(str, volumes.shape[2:]))} "
                             f"voxels, where the study has {len(rows)} of {'×'.join(map(str, size))} ({listing}, "
                             "config.yaml): it was replaced or damaged; delete it and rerun `medaug run` on the study")
    return rows, volumes


def mean_image(volumes: VolumeFile, batch: int = 64) -> torch.Tensor:
    """The voxel-wise mean (C, *spatial) of a stack, read ``batch`` images at a time."""
    total = torch.zeros(volumes.shape[1:])
    for part in Volumes.of(volumes).batches(batch):
        total += part.sum(0)
    return total / len(volumes)


def interpret_study(study_dir: str | os.PathLike, *, classifier: str | None = None,
                    conditions: list[str] | None = None, method: Method = "gradient",
                    device: str | None = None) -> dict[str, Path]:
    """Write the saliency maps of each condition (mean over its runs) under
    ``STUDY_DIR/interpret/<classifier>/<condition>/<method>/``, on ``device`` (default: the
    study's); returns condition → folder."""
    if method not in METHODS:
        raise ConfigError(f"unknown saliency method {method!r}; choose among {', '.join(METHODS)}")
    study_dir = Path(study_dir)
    config = load_study(study_dir)
    allow(study_dir)  # a study's folder: its log may be written
    classifier = classifier or select_classifiers(study_dir)[0].provenance.classifier
    conditions = conditions or default_conditions(study_dir, config, classifier)
    rows, stack = split_images(study_dir, "test", config.preprocessing.size)
    missing = next((path for path in rows["path"] if not Path(path).is_file()), None)
    if missing is not None:
        raise InputDataError(f"the study's test images (images/test.tsv) point to {missing}, which is gone (a "
                             "moved or cleaned study folder?): the maps take its grid; rerun `medaug run` on the study")
    affine = resized_affine(rows["path"][:1], config.preprocessing.size)
    in_template = config.preprocessing.enabled or config.data.caps is not None
    folders, shown = {}, None  # shown: the train mean (occluded cubes show the population) and the background
    with FolderLock(study_dir, "medaug interpret"):
        for condition in conditions:
            models = select_classifiers(study_dir, classifier, condition, ensemble=True)
            out = study_dir / INTERPRET_DIR / classifier / condition / method
            record = StepRecord(out.with_name(f"{method}.inputs.json"), {
                "format": SALIENCY_FORMAT, "method": method, "test_images": rows.to_dict("records"),
                "models": {m.name: [m.provenance.training_set, *file_signature(m.folder / "model.pt")]
                           for m in models}})
            if not (record.renew([out], f"{method} saliency of {condition}") and (out / OVERLAY_FILE).is_file()):
                if shown is None:
                    train_mean = mean_image(split_images(study_dir, "train", config.preprocessing.size)[1])
                    shown = train_mean, (template_on_study_grid(config.preprocessing) if in_template
                                         else train_mean[0].numpy())
                interpret_condition(models, Volumes.of(stack), rows, affine, shown[1], out, method, shown[0],
                                    device or config.device)
            folders[condition] = out
    return folders
