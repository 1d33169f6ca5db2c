"""Per-class generators fitted on the train split only, and pools of synthetic images per sampler.

``generators/<label>/`` holds each model (resumable training, ``best/``); ``synthetic/<pool>/`` (the
sampler entry's label, default its name) is a BIDS derivative of ``desc-synthetic`` images with provenance sidecars, plus a float16 stack
of each pool that studies stream from; a resumed study uses exactly the images a fresh one wrote.

Each generator and pool has a :class:`~medaug.run_folder.StepRecord` (``generators/<label>.inputs.json``,
``synthetic_<label>_seed<seed>.inputs.json``): changed settings, sampler options or training images
redo it. A pool's listing TSV, written last, is its commit record: files of a pool without a
listing (an interrupted write) are deleted and the pool is drawn again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medaug.compute import precision_record, resolve_device
from medaug.data.cohort import load_image
from medaug.data.volumes import VolumeFile, Volumes, write_volume_file
from medaug.data.splits import assert_disjoint
from medaug.generative.config import MODELS, GeneratorConfig
from medaug.generative.models import SHARED_FOLDER, build_model
from medaug.generative.persistence import load_generator
from medaug.generative.trainer import CHECKPOINT_FILE, TrainerConfig, train_generator
from medaug.generative.training_data import record_training_data
from medaug.provenance import GeneratorProvenance
from medaug.run_folder import StepRecord, fingerprint, remove_outputs
from medaug.sampling.posterior_check import MIN_DECODED_SPREAD
from medaug.sampling.pool import draw_pool, score_files, write_pool
from medaug.sampling.samplers import SAMPLERS, build_sampler
from medaug.sampling.synthetic_dataset import label_token, pool_file, synthetic_listing
from medaug.study.config import StudyConfig
from medaug.study.data import StudyData

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FittedGenerator:
    """A trained generator's ``best/`` folder and the fingerprint of what defined it."""

    best: Path
    fingerprint: str


def _retrain_if_contradicted(best: Path, label: str, train_rows: pd.DataFrame, out: Path) -> None:
    """A finished generator whose ``provenance.json`` names another label or other training subjects
    than the study's (an edited or copied-in file) is retrained, with a warning naming the keys:
    its synthetic images would otherwise carry the wrong label or training record."""
    if not GeneratorProvenance.is_finished(best):
        return
    recorded = GeneratorProvenance.read(best)
    expected = {"label": label, "train_participants": sorted(train_rows["participant_id"].unique())}
    changed = [key for key, value in expected.items()
               if getattr(recorded, key) != value and (key == "label" or getattr(recorded, key) is not None)]
    if changed:
        logger.warning("%s contradicts the study's config and split in: %s; retraining the %s generator",
                       best / "provenance.json", ", ".join(changed), label)
        remove_outputs([out])


def fit_generators(config: StudyConfig, data: StudyData, run_dir: Path) -> dict[str | None, dict[str, FittedGenerator]]:
    """One generator per diagnosis (seed ``trainer.seed + class index``) and per generator setting:
    the study's own (key None, ``generators/<label>/``) for the sampler entries without a
    ``generator`` of their own, and each entry's own (key: its pool label,
    ``generators/by-sampler/<pool>/<label>/``). Entries whose generator and trainer settings are
    the same share one set of generators (the first such entry's folder): two samplers of one
    model are compared on the same model. Retrained when settings or images change."""
    fitted, trained = {}, {}
    for spec in config.samplers:
        key = spec.pool if spec.generator is not None else None
        generator, trainer = config.generator_config(spec), config.trainer_config(spec)
        settings = fingerprint([generator.to_dict(), trainer.to_dict()])
        if settings not in trained:
            folder = run_dir / "generators" / ("by-sampler" if key else "") / (key or "")
            trained[settings] = _fit_class_generators(config, data, folder, generator, trainer)
        fitted[key] = trained[settings]
    return fitted


def _fit_class_generators(config: StudyConfig, data: StudyData, folder: Path, generator: GeneratorConfig,
                          trainer_settings: TrainerConfig) -> dict[str, FittedGenerator]:
    """The generator of each class; a model with a shared stage (a latent diffusion's autoencoder)
    first trains it once on the training images of every class (``folder/shared/``, seed
    ``trainer.seed + number of classes``), and each class's model starts from it."""
    labels = config.data.labels
    shared_config = MODELS.get(generator.model).shared_stage(generator)
    shared = None
    if shared_config is not None:  # a label named like its folder is refused by StudyConfig
        shared = _fit_generator(config, data, folder / SHARED_FOLDER, shared_config, trainer_settings, list(labels),
                                len(labels))
    fitted = {}
    for index, label in enumerate(labels):
        fitted[label] = _fit_generator(config, data, folder / label, generator, trainer_settings, [label], index,
                                       shared)
    return fitted


def _fit_generator(config: StudyConfig, data: StudyData, out: Path, generator: GeneratorConfig,
                   trainer_settings: TrainerConfig, labels: list[str], seed_offset: int,
                   shared: FittedGenerator | None = None) -> FittedGenerator:
    """One generator trained on the training images of ``labels`` (one class, or every class for a
    shared stage), starting from ``shared`` when given."""
    best, label = out / "best", "+".join(labels)
    codes = [config.data.labels.index(name) for name in labels]
    train_rows = data.train.rows[data.train.rows["diagnosis"].isin(labels)]
    validation_rows = data.validation.rows[data.validation.rows["diagnosis"].isin(labels)]
    assert_disjoint(generator_train=train_rows, test=data.test.rows)
    trainer = MODELS.get(generator.model).trainer_for(generator, TrainerConfig(**{
        **trainer_settings.to_dict(), "seed": trainer_settings.seed + seed_offset, "device": config.device,
        "mixed_precision": config.mixed_precision}))

    def one_or_all(values: list):  # a class's record keeps its single values, as before shared stages
        return values[0] if len(values) == 1 else values

    record = StepRecord(out.with_name(f"{out.name}.inputs.json"), {
        "label": label, "code": one_or_all(codes), "generator": generator.to_dict(),
        "trainer": {k: v for k, v in trainer.to_dict().items() if k != "device"},
        "train_images": one_or_all([data.train.class_fingerprints[name] for name in labels]),
        "validation_images": one_or_all([data.validation.class_fingerprints[name] for name in labels]),
        **({"shared": shared.fingerprint} if shared is not None else {}),
        **precision_record(config.device, config.mixed_precision)})
    record.renew([out], f"the {label} generator ({out})")
    _retrain_if_contradicted(best, label, train_rows, out)
    if not GeneratorProvenance.is_finished(best):
        torch.manual_seed(trainer.seed)
        model = build_model(generator)
        if shared is not None:
            model.start_from(load_generator(shared.best))
        logger.info("training the %s %s generator on %d images", label, generator.model, len(train_rows))
        train_generator(model, _class_images(data.train, codes), _class_images(data.validation, codes), out, trainer)
        record_training_data(best, label, train_rows, validation_rows, config.preprocessing.size)
    if not config.keep.generator_checkpoints:
        (out / CHECKPOINT_FILE).unlink(missing_ok=True)  # only an unfinished training resumes from it
    return FittedGenerator(best, record.fingerprint)


def _class_images(image_set, codes: int | list[int]) -> torch.Tensor:
    """The images of class ``codes`` (one code or several) of a split's image set."""
    return Volumes.of(image_set.images).take(torch.isin(image_set.labels, torch.as_tensor(codes))).load()


def _pool(out: Path, label: str, seed: int, count: int) -> Volumes:
    """The ``count`` images of a written pool, streamed from its float16 stack (built from the
    NIfTIs for folders written before stacks existed)."""
    table = pd.read_csv(synthetic_listing(out, label, seed), sep="\t")
    stack = pool_file(out, label, seed)
    if not stack.exists():
        shape = load_image(table["path"].iloc[0])[0].shape
        write_volume_file(stack, (load_image(path)[0][None, None] for path in table["path"]),
                          (len(table), 1, *shape), dtype="float16")
    return Volumes.of(VolumeFile(stack)).take(np.arange(count))


def pool_outputs(out: Path, label: str) -> list[Path]:
    """Every file a pool of class ``label`` may have left in its sampler folder (any seed), except
    the step records: the images' subject folders, listing, stack, quality and chain records."""
    token = label_token(label)
    subjects = re.compile(rf"^sub-synth{re.escape(token)}\d{{4}}$")
    files = [p for p in out.glob(f"synthetic_{token}_seed*") if not p.name.endswith(".inputs.json")]
    return files + [p for p in out.glob("sub-synth*") if subjects.match(p.name)]


def synthetic_pools(config: StudyConfig, data: StudyData, fitted: dict[str | None, dict[str, FittedGenerator]],
                    run_dir: Path) -> tuple[dict[str, dict[int, Volumes]], dict[str, str]]:
    """``config.synthetic_per_class`` images per class and sampler entry, keyed by the entry's pool name
    (:attr:`~medaug.study.config.SamplerSpec.pool`) then class code, and each entry's fingerprint
    (of its pools' records).

    Chains and decoding run on ``config.device``; images are written as they are decoded, then
    scored against the class's training images (:mod:`medaug.sampling.pool`, as ``medaug
    generate``). Sampler seeds come from :func:`pool_seed`.
    """
    count = config.synthetic_per_class
    device = resolve_device(config.device)
    pools: dict[str, dict[int, Volumes]] = {}
    fingerprints: dict[str, str] = {}
    for spec in config.samplers:
        out = run_dir / "synthetic" / spec.pool
        options = SAMPLERS.options(spec.name, spec.options)
        generators = fitted[spec.pool if spec.generator is not None else None]
        records, pending = [], []
        for index, label in enumerate(config.data.labels):
            seed = pool_seed(config.seed, spec.pool, index)
            listing, report = synthetic_listing(out, label, seed), score_files(out, label, seed)["quality"]
            record = StepRecord(listing.with_suffix(".inputs.json"), {
                "sampler": spec.name, "options": options.to_dict(), "seed": seed, "count": count,
                "generator": generators[label].fingerprint, "train_images": data.train.class_fingerprints[label],
                "allow_uninformative": config.allow_uninformative_generators,
                "novelty_quantile": config.novelty_quantile, "audit_quantile": config.memorization_quantile})
            records.append(record.fingerprint)
            # the quality record, written after the listing, commits the pool
            if not (record.renew(pool_outputs(out, label), f"the {spec.pool} pool of {label} ({out})")
                    and listing.exists() and report.exists()):
                remove_outputs(pool_outputs(out, label))  # an interrupted write: its files are not listed
                pending.append((index, label, seed))

        first = _drawn_together(config, data, spec, generators, device) if pending else {}
        for index, label, seed in pending:
            sampler, train = _fitted_sampler(config, data, spec, generators, index, device)
            drawn = draw_pool(sampler, count, seed=seed, train=train, novelty_quantile=config.novelty_quantile,
                              first=first.get(index))
            diagnostics = write_pool(sampler, drawn, out, model_dir=generators[label].best, train=train, seed=seed,
                                     quantile=config.memorization_quantile, stack=True).diagnostics
            rate = diagnostics.get("acceptance_rate")
            logger.info("%s: %d synthetic %s images%s", spec.pool, count, label,
                        f" (acceptance {rate:.2f})" if rate is not None else "")
        pools[spec.pool] = {index: _pool(out, label, pool_seed(config.seed, spec.pool, index), count)
                            for index, label in enumerate(config.data.labels)}
        fingerprints[spec.pool] = fingerprint(records)
    return pools, fingerprints


def _fitted_sampler(config: StudyConfig, data: StudyData, spec, generators: dict[str, FittedGenerator], index: int,
                    device: torch.device):
    """The sampler of entry ``spec`` fitted on class ``index``'s generator (on ``device``) and its training images."""
    label = config.data.labels[index]
    model = load_generator(generators[label].best, map_location=device)
    train = _class_images(data.train, index)
    return build_sampler(spec.name, **spec.options).fit(
        model, train.to(device), allow_uninformative=config.allow_uninformative_generators), train


def _drawn_together(config: StudyConfig, data: StudyData, spec, generators: dict[str, FittedGenerator],
                    device: torch.device) -> dict[int, tuple[torch.Tensor, dict]]:
    """With ``classes_together`` (samplers that can), every class's first draw by class code, from one
    batch of all the classes' chains, pending pools or not: a class is drawn in the same batch in a
    fresh study and in a resumed one. Empty otherwise. Every class's model is held while the chains run."""
    sampler_class = SAMPLERS.get(spec.name)
    if not (sampler_class.draws_classes_together and SAMPLERS.options(spec.name, spec.options).classes_together):
        return {}
    codes = range(len(config.data.labels))
    samplers = [_fitted_sampler(config, data, spec, generators, index, device)[0] for index in codes]
    drawn = sampler_class.draw_together(samplers, config.synthetic_per_class,
                                        seeds=[pool_seed(config.seed, spec.pool, index) for index in codes])
    return dict(zip(codes, drawn))


def pool_seed(seed: int, pool: str, code: int) -> int:
    """The seed of a pool of class ``code``: from the pool's name (its sampler entry's label), not
    its place in the list, so adding or reordering samplers leaves the other pools (and their
    results) as they were."""
    offset = int.from_bytes(hashlib.sha256(pool.encode()).digest()[:2], "big")
    return (seed + 100 * offset + code) % 2**32


def quality_table(config: StudyConfig, run_dir: Path) -> pd.DataFrame:
    """Per sampler and class: sample quality, chain diagnostics and warnings of the written pools."""
    rows = []
    for spec in config.samplers:
        for index, label in enumerate(config.data.labels):
            files = score_files(run_dir / "synthetic" / spec.pool, label, pool_seed(config.seed, spec.pool, index))
            if not files["quality"].exists():
                continue
            quality = json.loads(files["quality"].read_text())
            chains = json.loads(files["chains"].read_text())  # written before the quality
            warnings = quality.pop("warnings") + chains["chains"].get("warnings", [])
            if chains["posterior"] and chains["posterior"].get("decoded_spread", 1.0) < MIN_DECODED_SPREAD:
                warnings.append("uninformative generator (collapsed posterior): allowed by allow_uninformative_generators")
            rows.append({"sampler": spec.pool, "diagnosis": label, **quality,
                         **{k: chains["chains"][k] for k in CHAIN_COLUMNS if k in chains["chains"]},
                         "warnings": "; ".join(warnings)})
    return pd.DataFrame(rows)


CHAIN_COLUMNS = ("acceptance_rate", "step_size", "sigma", "ess_per_draw", "split_r_hat", "start_basin_fraction",
                 "sampling_temperature")
