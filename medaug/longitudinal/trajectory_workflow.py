"""Fit and generate with the feature-mapping trajectory model (thesis ch. 5) from image tables: the
steps behind ``medaug longitudinal fit --model feature-mapping`` and ``medaug longitudinal generate``
on its folder.

The features of a visit are the posterior means of a trained generator (``medaug
train-generator``); its decoder maps trajectory features back to images. The generator is saved
inside the model folder (``model/features/``), so the folder is whole."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medaug.errors import InputDataError
from medaug.generative.models import GenerativeModel
from medaug.generative.persistence import load_generator, load_model_folder, save_generator, weights_sha256
from medaug.generative.training_data import class_split, fingerprint
from medaug.io import write_tsv
from medaug.longitudinal.bids_output import write_synthetic_subjects
from medaug.longitudinal.sequences import AgeScale, Sequences, build_sequences
from medaug.longitudinal.workflow import fitted_before_markers, written_before_markers
from medaug.longitudinal.trajectory import (
    FeatureTrajectoryModel, TrajectoryConfig, TrajectorySampler, TrajectoryTraining, train_trajectory_model)
from medaug.output_folder import claim_output
from medaug.preprocessing.images import image_tensor, resized_affine
from medaug.provenance import LongitudinalProvenance
from medaug.run_folder import FolderLock, files_signature
from medaug.sampling.sampler import posterior_means

logger = logging.getLogger(__name__)

KIND = "feature-mapping"
FEATURES = "features"  # the generator's folder inside model/
DECODE_BATCH = 64


def fit_trajectory(table: pd.DataFrame, label: str, out_dir: str | os.PathLike, generator_dir: str | os.PathLike,
                   options: dict, training: TrajectoryTraining, *, visits: int, interval_years: float,
                   split_dir: str | os.PathLike | None = None) -> dict:
    """Train on the visit sequences of one diagnosis (subject-level train / validation split), each
    visit's features the posterior means of the generator in ``generator_dir``; at most ``visits``
    visits per subject, the first ones by age. Writes ``model/`` (trajectory weights, the
    generator in ``model/features/``, provenance), ``training_log.tsv``; resumes from ``checkpoint.pt``."""
    out_dir = Path(out_dir)
    generator = load_generator(generator_dir)
    if "age" not in table:
        raise InputDataError("the image table has no age column; ages give the observation times (add them to "
                             "sessions.tsv or participants.tsv and index the cohort again)")
    train_rows, validation_rows = class_split(table, label, split_dir, seed=training.seed)
    spatial = generator.config.input_shape[1:]
    train_features, validation_features = (posterior_means(generator, image_tensor(rows, spatial))
                                           for rows in (train_rows, validation_rows))
    train, scale = build_sequences(train_rows, train_features, max_visits=visits)
    validation, _ = build_sequences(validation_rows, validation_features, scale, max_visits=visits)
    for name, sequences in (("training", train), ("validation", validation)):
        if not (sequences.mask.sum(1) > 1).any():
            raise InputDataError(f"no {label} subject of the {name} set has two sessions with ages; the trajectory "
                                 "model needs follow-up sessions")
    config = TrajectoryConfig.from_dict({**options, "feature_dim": train_features.shape[1]})
    torch.manual_seed(training.seed)
    model = FeatureTrajectoryModel(config)
    claim_output(out_dir, "longitudinal fit", inputs=[generator_dir], own=fitted_before_markers)
    inputs = {"visits": visits, "images": files_signature([*train_rows["path"], *validation_rows["path"]]),
              "features": weights_sha256(generator_dir)}
    with FolderLock(out_dir, "medaug longitudinal fit"):
        model, log = train_trajectory_model(model, train, validation, **training.to_dict(),
                                            checkpoint=out_dir / "checkpoint.pt", inputs=inputs)
    write_tsv(out_dir / "training_log.tsv", pd.DataFrame(log))
    with torch.no_grad():
        codes = model.posterior(train)["lam"][0]
    provenance = LongitudinalProvenance(
        label=label, interval_years=interval_years, training=training.to_dict(),
        train_participants=train.participants, train_images=train_rows["path"].tolist(),
        training_set_sha256=fingerprint(train_rows["path"].tolist()),
        baseline_ages=[round(float(age), 2) for age in _baseline_ages(train)],
        image_affine=resized_affine(train_rows, spatial).tolist(), longitudinal_model=KIND, visits=visits,
        age_range=[scale.youngest, scale.oldest], trajectory_codes=codes.round(decimals=6).tolist())
    save_generator(generator, out_dir / "model" / FEATURES, {"source": str(Path(generator_dir).resolve())})
    save_generator(model, out_dir / "model", provenance.to_dict())
    best = min(log, key=lambda entry: entry["val_loss"])
    return {"train_subjects": len(train), "validation_subjects": len(validation),
            "observed_visits": int(train.mask.sum()), "best_epoch": best["epoch"], "best_val_loss": best["val_loss"]}


def _baseline_ages(sequences: Sequences) -> np.ndarray:
    first = sequences.rows[sequences.rows["visit"] == 0].set_index("participant_id")
    return first.loc[sequences.participants, "age"].to_numpy(dtype=float)


def load_trajectory(model_dir: Path) -> tuple[FeatureTrajectoryModel, GenerativeModel, LongitudinalProvenance]:
    """The trajectory model of a ``model/`` folder, its feature generator and its provenance."""
    model = load_model_folder(model_dir, lambda c: FeatureTrajectoryModel(TrajectoryConfig.from_dict(c)))
    return model, load_generator(model_dir / FEATURES), LongitudinalProvenance.read(model_dir)


def generate_trajectories(model_dir: Path, n: int, out_dir: str | os.PathLike, *, seed: int, start_index: int = 1,
                          components: int = 5) -> pd.DataFrame:
    """n new subjects (§5.2.2): λ from a Gaussian mixture of ``components`` on the training
    posterior means, η and τ from their priors; baseline ages drawn from the training subjects',
    ``visits`` visits ``interval_years`` apart, decoded to images by the feature generator."""
    if n < 1:
        raise InputDataError(f"the number of subjects must be ≥ 1, got {n}")
    model, generator, record = load_trajectory(model_dir)
    sampler = TrajectorySampler(model, components).fit_codes(torch.as_tensor(record.trajectory_codes), seed)
    ages = np.random.default_rng(seed).choice(np.asarray(record.baseline_ages), n)
    slots = ages[:, None] + record.interval_years * np.arange(record.visits)[None, :]
    times = torch.as_tensor(AgeScale(*record.age_range).to_time(slots), dtype=torch.float32)
    features = sampler.new_subjects(n, times, seed)
    with torch.no_grad():
        images = torch.cat([generator.decode(part) for part in features.flatten(0, 1).split(DECODE_BATCH)])
    claim_output(out_dir, "longitudinal generate", inputs=[model_dir], own=written_before_markers)
    provenance = {**record.sidecar_fields(model_dir, "feature-mapping-trajectory"), "Seed": seed,
                  "Components": components}
    return write_synthetic_subjects(images.view(n, record.visits, *images.shape[1:]), ages, out_dir,
                                    label=record.label, interval_years=record.interval_years, affine=record.affine,
                                    provenance=provenance, start_index=start_index)
