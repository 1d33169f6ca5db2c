"""Per-class generators fitted on the train split only, and pools of synthetic images per sampler.

``generators/<label>/`` holds each model (resumable training, ``best/``); ``synthetic/<sampler>/``
is a BIDS derivative of ``desc-synthetic`` images with provenance sidecars. Pools are read back
from the written files, so a resumed study uses exactly the images a fresh one wrote.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch

from medaug.data.cohort import load_image
from medaug.data.splits import assert_disjoint
from medaug.errors import OutputExistsError
from medaug.generative.models import build_model
from medaug.generative.persistence import load_generator
from medaug.generative.trainer import TrainerConfig, train_generator
from medaug.generative.training_data import record_training_data
from medaug.sampling.samplers import build_sampler
from medaug.sampling.synthetic import synthetic_listing, write_synthetic
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
        done = best / "provenance.json"
        if not (done.exists() and "training_set_sha256" in json.loads(done.read_text())):
            trainer = TrainerConfig(**{**config.trainer.to_dict(), "seed": config.trainer.seed + index,
                                       "device": config.device})
            torch.manual_seed(trainer.seed)
            model = build_model(config.generator_config())
            logger.info("training the %s generator on %d images", label, len(train_rows))
            train_generator(model, data.train.images[data.train.labels == index],
                            data.validation.images[data.validation.labels == index], out, trainer)
            record_training_data(best, label, train_rows, validation_rows, config.preprocessing.size)
        folders[label] = best
    return folders


def _read_pool(table: pd.DataFrame) -> torch.Tensor:
    return torch.stack([load_image(path)[0] for path in table["path"]]).unsqueeze(1)


def synthetic_pools(config: StudyConfig, data: StudyData, generators: dict[str, Path],
                    run_dir: Path) -> dict[str, dict[int, torch.Tensor]]:
    """``max(synthetic_per_class)`` images per class and sampler, keyed by sampler then class code.

    Sampler seeds are ``config.seed + 100·sampler index + class index``.
    """
    count = max(config.synthetic_per_class)
    pools: dict[str, dict[int, torch.Tensor]] = {}
    for s_index, spec in enumerate(config.samplers):
        out = run_dir / "synthetic" / spec.name
        pools[spec.name] = {}
        for index, label in enumerate(config.data.labels):
            seed = config.seed + 100 * s_index + index
            listing = synthetic_listing(out, label, seed)
            if not listing.exists():
                model = load_generator(generators[label])  # samplers run on the CPU
                sampler = build_sampler(spec.name, **spec.options).fit(model, data.train.images[data.train.labels == index])
                samples = sampler.sample(count, seed=seed)
                write_synthetic(samples, out, label=label, model_dir=generators[label], sampler=sampler, seed=seed)
                rate = samples.diagnostics.get("acceptance_rate")
                logger.info("%s: %d synthetic %s images%s", spec.name, count, label,
                            f" (acceptance {rate:.2f})" if rate is not None else "")
            table = pd.read_csv(listing, sep="\t")
            if len(table) < count:
                raise OutputExistsError(f"{listing} lists {len(table)} synthetic images but the config asks for "
                                        f"{count}; use a new output folder for a larger synthetic_per_class")
            pools[spec.name][index] = _read_pool(table.head(count))
    return pools

