"""Per-class generators fitted on the train split only, and pools of synthetic images per sampler.

``generators/<label>/`` holds each model (resumable training, ``best/``); ``synthetic/<sampler>/``
is a BIDS derivative of ``desc-synthetic`` images with provenance sidecars, plus a float16 stack
of each pool that studies stream from; a resumed study uses exactly the images a fresh one wrote.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medaug.compute import resolve_device
from medaug.data.cohort import load_image
from medaug.data.volumes import VolumeFile, Volumes, write_volume_file
from medaug.data.splits import assert_disjoint
from medaug.errors import OutputExistsError
from medaug.generative.models import build_model
from medaug.generative.persistence import load_generator
from medaug.generative.trainer import TrainerConfig, train_generator
from medaug.generative.training_data import record_training_data
from medaug.io import write_json
from medaug.provenance import GeneratorProvenance
from medaug.sampling.posterior_check import MIN_DECODED_SPREAD
from medaug.sampling.quality import QUALITY_IMAGES, quality_warnings, reconstruct, sample_quality
from medaug.sampling.samplers import build_sampler
from medaug.sampling.synthetic import pool_file, synthetic_listing, write_synthetic
from medaug.study.config import StudyConfig
from medaug.study.data import StudyData

logger = logging.getLogger(__name__)


def fit_generators(config: StudyConfig, data: StudyData, run_dir: Path) -> dict[str, Path]:
    """One generator per diagnosis (seed ``config.seed + class index``); returns the ``best/`` folders."""
    folders = {}
    for index, label in enumerate(config.data.labels):
        out = run_dir / "generators" / label
        best = out / "best"
        train_rows = data.train.rows[data.train.rows["diagnosis"] == label]
        validation_rows = data.validation.rows[data.validation.rows["diagnosis"] == label]
        assert_disjoint(generator_train=train_rows, test=data.test.rows)
        if not GeneratorProvenance.is_finished(best):
            trainer = TrainerConfig(**{**config.trainer.to_dict(), "seed": config.trainer.seed + index,
                                       "device": config.device, "mixed_precision": config.mixed_precision})
            torch.manual_seed(trainer.seed)
            model = build_model(config.generator_config())
            logger.info("training the %s generator on %d images", label, len(train_rows))
            train_generator(model, _class_images(data.train, index), _class_images(data.validation, index), out, trainer)
            record_training_data(best, label, train_rows, validation_rows, config.preprocessing.size)
        folders[label] = best
    return folders


def _class_images(image_set, code: int) -> torch.Tensor:
    return Volumes.of(image_set.images).take(image_set.labels == code).load()


def _pool(out: Path, label: str, seed: int, count: int) -> Volumes:
    """The first ``count`` images of a written pool, streamed from its float16 stack (built from the
    NIfTIs for folders written before stacks existed)."""
    table = pd.read_csv(synthetic_listing(out, label, seed), sep="\t")
    if len(table) < count:
        raise OutputExistsError(f"{synthetic_listing(out, label, seed)} lists {len(table)} synthetic images but the "
                                f"config asks for {count}; use a new output folder for a larger synthetic_per_class")
    stack = pool_file(out, label, seed)
    if not stack.exists():
        shape = load_image(table["path"].iloc[0])[0].shape
        write_volume_file(stack, (load_image(path)[0][None, None] for path in table["path"]),
                          (len(table), 1, *shape), dtype="float16")
    return Volumes.of(VolumeFile(stack)).take(np.arange(count))


def synthetic_pools(config: StudyConfig, data: StudyData, generators: dict[str, Path],
                    run_dir: Path) -> dict[str, dict[int, Volumes]]:
    """``max(synthetic_per_class)`` images per class and sampler, keyed by sampler then class code.

    Chains and decoding run on ``config.device``; images are written as they are decoded.
    Sampler seeds are ``config.seed + 100·sampler index + class index``.
    """
    count = max(config.synthetic_per_class)
    device = resolve_device(config.device)
    pools: dict[str, dict[int, Volumes]] = {}
    for s_index, spec in enumerate(config.samplers):
        out = run_dir / "synthetic" / spec.name
        pools[spec.name] = {}
        for index, label in enumerate(config.data.labels):
            seed = config.seed + 100 * s_index + index
            report = quality_file(out, label, seed)
            model = None
            if not synthetic_listing(out, label, seed).exists():
                model = load_generator(generators[label], map_location=device)
                sampler = build_sampler(spec.name, **spec.options).fit(
                    model, _class_images(data.train, index).to(device),
                    allow_uninformative=config.allow_uninformative_generators)
                latents, diagnostics = sampler.draw(count, seed=seed)
                write_synthetic(latents.cpu(), sampler.decode(latents), out, label=label, model_dir=generators[label],
                                sampler=sampler, seed=seed, pool=True, diagnostics=diagnostics)
                write_json(report.with_suffix(".chains.json"), {"chains": diagnostics, "posterior": sampler.posterior})
                rate = diagnostics.get("acceptance_rate")
                logger.info("%s: %d synthetic %s images%s", spec.name, count, label,
                            f" (acceptance {rate:.2f})" if rate is not None else "")
            pools[spec.name][index] = _pool(out, label, seed, count)
            if not report.exists():
                model = model or load_generator(generators[label], map_location=device)
                write_json(report, _quality(model, pools[spec.name][index], data, index, config))
    return pools


def quality_file(out: Path, label: str, seed: int) -> Path:
    """The sample-quality record of one pool, beside its listing."""
    return synthetic_listing(out, label, seed).with_suffix(".quality.json")


def _quality(model, pool: Volumes, data: StudyData, code: int, config: StudyConfig) -> dict:
    """:func:`~medaug.sampling.quality.sample_quality` of the pool's first images against the class's
    training images, with the class's held-out test images as the reference of a non-copying generator."""
    train = _class_images(data.train, code)
    held_out = Volumes.of(data.test.images).take(data.test.labels == code)
    held_out = held_out.take(np.arange(min(len(held_out), QUALITY_IMAGES))).load()
    synthetic = pool.take(np.arange(min(len(pool), QUALITY_IMAGES))).load().float()
    quality = sample_quality(synthetic, train, held_out=held_out, reconstructions=reconstruct(model, train),
                             held_out_reconstructions=reconstruct(model, held_out) if len(held_out) else None,
                             quantile=config.memorization_quantile)
    return {**quality, "warnings": quality_warnings(quality)}


def quality_table(config: StudyConfig, run_dir: Path) -> pd.DataFrame:
    """Per sampler and class: sample quality, chain diagnostics and warnings of the written pools."""
    rows = []
    for s_index, spec in enumerate(config.samplers):
        for index, label in enumerate(config.data.labels):
            report = quality_file(run_dir / "synthetic" / spec.name, label, config.seed + 100 * s_index + index)
            if not report.exists():
                continue
            quality = json.loads(report.read_text())
            chains_file = report.with_suffix(".chains.json")
            chains = json.loads(chains_file.read_text()) if chains_file.exists() else {"chains": {}, "posterior": {}}
            warnings = quality.pop("warnings") + chains["chains"].get("warnings", [])
            if chains["posterior"] and chains["posterior"].get("decoded_spread", 1.0) < MIN_DECODED_SPREAD:
                warnings.append("uninformative generator (collapsed posterior): allowed by allow_uninformative_generators")
            rows.append({"sampler": spec.name, "diagnosis": label, **quality,
                         **{k: chains["chains"][k] for k in CHAIN_COLUMNS if k in chains["chains"]},
                         "warnings": "; ".join(warnings)})
    return pd.DataFrame(rows)


CHAIN_COLUMNS = ("acceptance_rate", "step_size", "sigma", "ess_per_draw", "split_r_hat", "start_basin_fraction",
                 "sampling_temperature")
