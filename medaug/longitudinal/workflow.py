"""Fit, generate and impute with the flow-based longitudinal VAE from image tables (cohort TSV or
CAPS + labels): the steps behind ``medaug longitudinal fit|generate|impute``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medaug.errors import InputDataError
from medaug.generative.persistence import load_model_folder, save_generator
from medaug.generative.training_data import class_split, fingerprint
from medaug.io import write_tsv
from medaug.longitudinal.bids_output import DATASET_NAME, write_imputed_visits, write_synthetic_subjects
from medaug.longitudinal.flow_vae import FlowTraining, FlowVAEConfig, LongitudinalFlowVAE, train_flow_vae
from medaug.longitudinal.sequences import visit_grid
from medaug.output_folder import claim_output, derivative_named
from medaug.preprocessing.images import image_tensor, resized_affine
from medaug.provenance import LongitudinalProvenance
from medaug.run_folder import FolderLock, files_signature
from medaug.sampling.samplers import build_sampler, posterior_means

logger = logging.getLogger(__name__)


def fit_longitudinal(table: pd.DataFrame, label: str, out_dir: str | os.PathLike, config: FlowVAEConfig,
                     settings: FlowTraining, *, interval_years: float,
                     split_dir: str | os.PathLike | None = None) -> dict:
    """Train on the sequences of one diagnosis (subject-level train / validation split); writes
    ``model/`` (config, weights, provenance), ``training_log.tsv`` and resumes from ``checkpoint.pt``."""
    out_dir = Path(out_dir)
    train_rows, validation_rows = class_split(table, label, split_dir, seed=settings.seed)
    spatial = config.generator.input_shape[1:]
    grids = [visit_grid(rows, image_tensor(rows, spatial), visits=config.visits, interval_years=interval_years)
             for rows in (train_rows, validation_rows)]
    for name, grid in zip(("training", "validation"), grids):
        if not (grid.mask.sum(1) > 1).any():
            raise InputDataError(f"no {label} subject of the {name} set has two visits on the grid; a "
                                 "longitudinal model needs follow-up sessions (check ages and --interval)")
    torch.manual_seed(settings.seed)
    model = LongitudinalFlowVAE(config)
    claim_output(out_dir, "longitudinal fit", own=fitted_before_markers)
    with FolderLock(out_dir, "medaug longitudinal fit"):
        model, log = train_flow_vae(model, (grids[0].values, grids[0].mask), (grids[1].values, grids[1].mask),
                                    settings, checkpoint=out_dir / "checkpoint.pt",
                                    images=files_signature([*train_rows["path"], *validation_rows["path"]]))
    write_tsv(out_dir / "training_log.tsv", pd.DataFrame(log))
    first_codes = posterior_means(model.frame, grids[0].values[:, 0]).cpu()  # what `generate --start gmm` fits
    provenance = LongitudinalProvenance(
        label=label, interval_years=interval_years, training=settings.to_dict(),
        train_participants=grids[0].participants, train_images=train_rows["path"].tolist(),
        training_set_sha256=fingerprint(train_rows["path"].tolist()),
        baseline_ages=grids[0].baseline_age.round(2).tolist(),
        image_affine=resized_affine(train_rows, spatial).tolist(),
        first_visit_codes=first_codes.round(decimals=6).tolist())
    save_generator(model, out_dir / "model", provenance.to_dict())
    best = min([e for e in log if not e["warmup"]] or log, key=lambda e: e["val_loss"])  # train_flow_vae's rule
    return {"train_subjects": len(grids[0].participants), "validation_subjects": len(grids[1].participants),
            "observed_visits": int(grids[0].mask.sum()), "best_epoch": best["epoch"], "best_val_loss": best["val_loss"]}


def fitted_before_markers(folder: Path) -> bool:
    """A model folder of :func:`fit_longitudinal` written before markers."""
    return any((folder / name).exists() for name in ("checkpoint.pt", "model", "training_log.tsv"))


written_before_markers = derivative_named(DATASET_NAME)  # generate / impute folders written before markers


def model_folder(model_dir: str | os.PathLike) -> tuple[Path, str]:
    """The ``model/`` folder of a ``medaug longitudinal fit`` output (or that folder itself) and the
    kind of model it holds: ``flow-vae`` or ``feature-mapping``."""
    model_dir = Path(model_dir)
    model_dir = model_dir / "model" if (model_dir / "model").is_dir() else model_dir
    if not (model_dir / "provenance.json").is_file():
        raise InputDataError(f"{model_dir} is not a saved model folder of `medaug longitudinal fit` (no "
                             "provenance.json); give the --out folder of that command")
    return model_dir, LongitudinalProvenance.read(model_dir).longitudinal_model or "flow-vae"


def load_longitudinal(model_dir: str | os.PathLike) -> tuple[LongitudinalFlowVAE, LongitudinalProvenance, Path]:
    """The flow-based model saved by :func:`fit_longitudinal`, its provenance and its folder (``model/``)."""
    model_dir, kind = model_folder(model_dir)
    if kind != "flow-vae":
        raise InputDataError(f"{model_dir} holds a {kind} trajectory model; imputation (Alg. 7) is the flow-based "
                             "model's: fit one with `medaug longitudinal fit` (--model flow-vae)")
    model = load_model_folder(model_dir, lambda c: LongitudinalFlowVAE(FlowVAEConfig.from_dict(c)))
    return model, LongitudinalProvenance.read(model_dir), model_dir


def _provenance(record: LongitudinalProvenance, model_dir: Path, seed: int, **extra) -> dict:
    """Sidecar keys of the images a longitudinal model wrote."""
    return {**record.sidecar_fields(model_dir, "longitudinal-flow-vae"), "Seed": seed, **extra}


START_SAMPLERS = ("prior", "gmm")


def generate_longitudinal(model_dir: str | os.PathLike, n: int, out_dir: str | os.PathLike, *, seed: int,
                          start_index: int = 1, start: str = "prior", components: int = 4) -> pd.DataFrame:
    """n new subjects through the flows, z_0 from the prior (``start="prior"``) or from a Gaussian
    mixture of ``components`` fitted on the training subjects' first-visit codes (``"gmm"``, an
    ex-post density that keeps z_0 where the encoder put real first visits); baseline ages drawn
    from the training subjects' baseline ages."""
    if n < 1:
        raise InputDataError(f"the number of subjects must be ≥ 1, got {n}")
    if start not in START_SAMPLERS:
        raise InputDataError(f"start must be one of {', '.join(START_SAMPLERS)}, got {start!r}")
    model, record, folder = load_longitudinal(model_dir)
    sampler = build_sampler("gmm", n_components=components) if start == "gmm" else None
    if sampler is not None:
        if record.first_visit_codes is None:
            raise InputDataError(f"{folder.resolve()} was fitted before first-visit codes were saved; "
                                 "refit it with `medaug longitudinal fit` to use --start gmm")
        sampler.fit_codes(model.frame, torch.as_tensor(record.first_visit_codes))
    images = model.sample(n, seed=seed, start=sampler)
    ages = np.random.default_rng(seed).choice(np.asarray(record.baseline_ages), n)
    claim_output(out_dir, "longitudinal generate", inputs=[model_dir], own=written_before_markers)
    return write_synthetic_subjects(images, ages, out_dir, label=record.label,
                                    interval_years=record.interval_years, affine=record.affine,
                                    provenance=_provenance(record, folder, seed, Start=start, StartComponents=components
                                                           if sampler else None), start_index=start_index)


def impute_longitudinal(model_dir: str | os.PathLike, table: pd.DataFrame, out_dir: str | os.PathLike, *,
                        draws: int = 10, seed: int = 0, sources=()) -> pd.DataFrame:
    """Alg. 7 for every subject of the model's diagnosis in ``table``: the missing slots of the
    grid, between observed visits (imputed) and after the last one (extrapolated)."""
    model, record, folder = load_longitudinal(model_dir)
    rows = table[table["diagnosis"] == record.label]
    if rows.empty:
        raise InputDataError(f"no image with diagnosis {record.label!r}, the model's label, in the table")
    grid = visit_grid(rows, image_tensor(rows, model.config.generator.input_shape[1:]),
                      visits=model.config.visits, interval_years=record.interval_years)
    images, anchors = model.impute(grid.values, grid.mask, draws, seed=seed)
    logger.info("imputation anchors (visit index): %s", np.bincount(anchors.numpy()).tolist())
    claim_output(out_dir, "longitudinal impute", inputs=[model_dir, *sources], own=written_before_markers)
    return write_imputed_visits(images, grid, out_dir, affine=record.affine,
                                provenance={**_provenance(record, folder, seed), "Draws": draws},
                                sources=sources)
