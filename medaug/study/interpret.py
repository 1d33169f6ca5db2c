"""``medaug interpret``: saliency maps of a study's saved CNNs on its test subjects
(:mod:`medaug.study.saliency`), per condition: by default real-only and the augmented condition
the validation split chose (``models.tsv``), so that the two can be compared.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medaug.data.volumes import VolumeFile
from medaug.errors import ConfigError, InputDataError
from medaug.preprocessing.images import resized_affine
from medaug.run_folder import FolderLock
from medaug.study.html_report import template_on_study_grid
from medaug.study.models import MODELS_FILE, select_classifiers
from medaug.study.predict import load_study
from medaug.study.saliency import INTERPRET_DIR, METHODS, Method, interpret_condition


def default_conditions(study_dir: Path, classifier: str) -> list[str]:
    """``real`` and the best non-real condition on validation (mean over runs), when there is one."""
    table = pd.read_csv(study_dir / MODELS_FILE, sep="\t", keep_default_na=False)
    table = table[table["classifier"] == classifier]
    means = table.groupby("condition", sort=False)["val_balanced_accuracy"].mean()
    augmented = means.drop("real", errors="ignore")
    return ["real", *([str(augmented.idxmax())] if len(augmented) else [])]


def _split_images(study_dir: Path, split: str) -> tuple[pd.DataFrame, VolumeFile]:
    listing, stack = study_dir / "images" / f"{split}.tsv", study_dir / "images" / f"{split}.npy"
    if not (listing.is_file() and stack.is_file()):
        raise InputDataError(f"{study_dir} has no {split} image stack ({stack}); rerun `medaug run` on the study")
    return pd.read_csv(listing, sep="\t", dtype=str, keep_default_na=False), VolumeFile(stack)


def mean_image(volumes: VolumeFile, batch: int = 64) -> torch.Tensor:
    """The voxel-wise mean (C, *spatial) of a stack, read ``batch`` images at a time."""
    total = torch.zeros(volumes.shape[1:])
    for start in range(0, len(volumes), batch):
        total += volumes[np.arange(start, min(start + batch, len(volumes)))].sum(0)
    return total / len(volumes)


def interpret_study(study_dir: str | os.PathLike, *, classifier: str | None = None,
                    conditions: list[str] | None = None, method: Method = "gradient") -> dict[str, Path]:
    """Write the saliency maps of each condition (mean over its runs) under
    ``STUDY_DIR/interpret/<classifier>/<condition>/<method>/``; returns condition → folder."""
    if method not in METHODS:
        raise ConfigError(f"unknown saliency method {method!r}; choose among {', '.join(METHODS)}")
    study_dir = Path(study_dir)
    config = load_study(study_dir)
    classifier = classifier or select_classifiers(study_dir)[0].provenance.classifier
    conditions = conditions or default_conditions(study_dir, classifier)
    rows, stack = _split_images(study_dir, "test")
    images = stack[np.arange(len(stack))]
    reference = mean_image(_split_images(study_dir, "train")[1])  # occluded cubes show the population's anatomy
    missing = next((path for path in rows["path"] if not Path(path).is_file()), None)
    if missing is not None:
        raise InputDataError(f"{missing}, a test image of the study, is gone: the maps take its affine; "
                             "rerun `medaug run` on the study")
    affine = resized_affine(rows["path"][:1], config.preprocessing.size)
    in_template = config.preprocessing.enabled or config.data.caps is not None
    background = (template_on_study_grid(config.preprocessing) if in_template
                  else images[:, 0].mean(0).numpy())  # not registered: the mean test image
    folders = {}
    with FolderLock(study_dir, "medaug interpret"):
        for condition in conditions:
            models = select_classifiers(study_dir, classifier, condition, ensemble=True)
            out = study_dir / INTERPRET_DIR / classifier / condition / method
            interpret_condition(models, images, rows, affine, background, out, method, reference)
            folders[condition] = out
    return folders
