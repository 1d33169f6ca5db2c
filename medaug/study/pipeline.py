"""Run a whole augmentation study from its config, resumably (``medaug run pipelines/<name>.yaml``).

Run folder: ``config.yaml`` (the resolved config), ``cohort.tsv``, ``split/``, ``caps/``
(preprocessing cache), ``generators/<label>/``, ``synthetic/<sampler>/`` (BIDS derivative),
``search/`` (optimized CNN), ``runs/…`` (one folder per task, CNNs with their ``model/``), then
``models.tsv`` (saved classifiers and the validation's choice), ``training_images.tsv`` (what
``medaug predict`` refuses), ``interpret/`` (gradient saliency maps of real-only and the
augmented condition validation prefers), ``metrics.tsv``, ``summary.tsv``, ``summary.md``, ``differences.tsv``, ``gan.tsv``, ``memorization.tsv``, ``quality.tsv`` and
``figures/``. Re-running skips every finished step whose inputs are unchanged (step records,
:mod:`medaug.run_folder`): changed sampler options, classifier settings or input images redo
that step and what depends on it. A folder only accepts a config whose result-defining settings
match (:data:`EXTENSIBLE` keys may change: more runs, classifiers, conditions or samplers add
tasks; the report covers the tasks of the current config). The folder is locked while a run
writes it, and a folder holding files that no study run wrote is refused.
Tasks run through ``executor`` (:mod:`medaug.study.executors`: sequential, or fanned out on Ray with
identical results); failed tasks are listed in ``failed_tasks.tsv`` and rerunning resumes.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from medaug.errors import ConfigError, OutputExistsError, StudyTaskError
from medaug.io import write_json, write_text, write_tsv
from medaug.output_folder import check_output, claim_output
from medaug.run_folder import FolderLock, StepRecord
from medaug.study.classifiers import CLASSIFIERS
from medaug.study.config import StudyConfig
from medaug.study.data import StudyData, prepare_data
from medaug.study.interpret import interpret_study
from medaug.study.saved_classifiers import MODELS_FILE, TRAINING_IMAGES_FILE, model_table, training_images_table
from medaug.study.executors import FAILURES_FILE, run_pending
from medaug.study.html_report import StudyImages, template_outline
from medaug.study.report import memorization_table, write_report
from medaug.study.search import CNNArchitecture, random_search
from medaug.study.generation import fit_generators, quality_table, synthetic_pools
from medaug.study.tasks import METRICS_FILE, StudyContext, study_tasks, training_settings

logger = logging.getLogger(__name__)
STUDY_MARKER = ".medaug-study.json"  # written by the first run into a folder: the folder is the study's
# may change in an existing folder: they add tasks, or the step records redo what depends on them
# (classifier settings, the architecture search); `output` is where the folder is now (a moved folder resumes)
EXTENSIBLE = ("name", "output", "runs", "classifiers", "conditions", "samplers", "memorization_quantile", "executor",
              "allow_uninformative_generators", "keep")


def _inputs(config: StudyConfig) -> list:
    """The datasets a study reads: its output may not lie inside them."""
    return [*config.data.sources, *(t.bids for t in config.data.independent_tests)]


def _study_before_markers(run_dir: Path) -> bool:
    """A study folder written before markers: its config and its split."""
    return (run_dir / "config.yaml").is_file() and (run_dir / "split" / "split.json").is_file()


def _check_location(config: StudyConfig, run_dir: Path) -> None:
    """Refuse an output inside an input dataset or holding other files, an independent test cohort
    that is the study's own (before anything is written)."""
    check_output(run_dir, "run", inputs=_inputs(config), own=_study_before_markers, marker=STUDY_MARKER)
    for cohort in config.data.independent_tests:
        if any(Path(cohort.bids).resolve() == Path(source).resolve() for source in config.data.sources):
            raise ConfigError(f"independent test cohort {cohort.name!r} is the study's own dataset {cohort.bids}; "
                              "an independent cohort must hold other subjects")


def _claim_folder(config: StudyConfig, run_dir: Path) -> None:
    """Claim the folder (:func:`claim_output`: a study's own when a run marked it, or when it holds
    a study's config and split; a config.yaml copied among other files does not make them the
    study's); refuse one holding another study; record the config."""
    claim_output(run_dir, "run", inputs=_inputs(config), own=_study_before_markers, marker=STUDY_MARKER)
    recorded = run_dir / "config.yaml"
    current = config.to_dict()
    if recorded.exists():
        try:
            previous = yaml.safe_load(recorded.read_text())
        except yaml.YAMLError:
            previous = None
        if not isinstance(previous, dict) or "data" not in previous:
            raise OutputExistsError(f"{recorded} is not a study configuration that `medaug run` wrote; "
                                    "give an empty or new output folder")
        try:  # options added to medaug since the folder was made hold their defaults in it
            previous = StudyConfig.from_dict(previous).to_dict()
        except ConfigError:  # written by another medaug version: compared as it is
            pass
        changed = sorted(k for k in set(previous) | set(current)
                         if k not in EXTENSIBLE and previous.get(k) != current.get(k))
        if changed:
            raise OutputExistsError(f"{run_dir} holds a study with other {', '.join(changed)} settings ({recorded}); "
                                    f"use a new output folder (only {', '.join(EXTENSIBLE)} may change)")
    write_text(recorded, yaml.safe_dump(current, sort_keys=False))


def _optimized_architecture(config: StudyConfig, data: StudyData, run_dir: Path) -> CNNArchitecture:
    """The CNN architecture search on the train split, with the options of the classifier that
    needs it (``search``, ``training``), redone when those settings or the images change."""
    options = next(spec.parsed() for spec in config.classifiers if CLASSIFIERS.get(spec.name).needs_search)
    best, search, training = run_dir / "search" / "best.json", options.search, training_settings(options, config)
    record = StepRecord(run_dir / "search.inputs.json", {"search": search.to_dict(), "images": data.train.fingerprint,
                                                         "training": training.to_dict()})
    if record.renew([run_dir / "search"], "the CNN architecture search") and best.exists():
        return CNNArchitecture.from_dict(json.loads(best.read_text()))
    architecture, trials = random_search(data.train.images, data.train.labels,
                                         data.train.rows["participant_id"].to_numpy(), trials=search.trials,
                                         folds=search.folds, epochs=search.epochs, seed=search.seed, base=training)
    write_tsv(run_dir / "search" / "trials.tsv", trials)
    write_json(best, architecture.to_dict())
    return architecture


def _warn_outside_the_config(run_dir: Path, tasks: list) -> None:
    """Name the task folders of earlier configs (a removed condition, another synthetic count): kept
    on disk, but outside the report, ``models.tsv`` and ``medaug predict``."""
    current = {run_dir / task.folder for task in tasks}
    stale = sorted(path for path in run_dir.glob("runs/*/*/run-*") if path.is_dir() and path not in current)
    if stale:
        names = sorted({str(path.parent.relative_to(run_dir)) for path in stale})
        logger.warning("%d task folder(s) of earlier configs are not in this study's config: %s%s; they are kept "
                       "but left out of the report and of `medaug predict` (delete them to free the space)",
                       len(stale), ", ".join(names[:4]), " …" if len(names) > 4 else "")


def run_study(config: StudyConfig) -> dict:
    """Every step of the study, skipping finished ones; returns the report tables."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("a study is not run under torchrun: it spreads its tasks with executor: ray "
                          "(gpus_per_task: 1 gives each task a GPU); DDP is for training one generator "
                          "(torchrun -m medaug train-generator)")
    run_dir = Path(config.output)
    _check_location(config, run_dir)
    with FolderLock(run_dir, "medaug run"):
        return _run_study(config, run_dir)


def _run_study(config: StudyConfig, run_dir: Path) -> dict:
    _claim_folder(config, run_dir)
    data = prepare_data(config, run_dir)
    context = StudyContext(config, data)
    memorization, quality = pd.DataFrame(), pd.DataFrame()
    if config.needs_synthetic:
        generators = fit_generators(config, data, run_dir)
        context.pools, context.pool_fingerprints = synthetic_pools(config, data, generators, run_dir)
        memorization = memorization_table(context.pools, data.train.images, data.train.labels, config.data.labels,
                                          config.memorization_quantile)
        quality = quality_table(config, run_dir)
    if any(CLASSIFIERS.get(spec.name).needs_search for spec in config.classifiers):
        context.optimized = _optimized_architecture(config, data, run_dir)
    tasks = study_tasks(config)
    _warn_outside_the_config(run_dir, tasks)
    failures = run_pending(tasks, context, run_dir, config.executor)
    if failures:
        raise StudyTaskError(f"{len(failures)} of {len(tasks)} study tasks failed, listed in "
                             f"{run_dir / FAILURES_FILE}; fix the cause and rerun the same command: "
                             "finished tasks are skipped")
    # the task folders are the single source of results, fresh or resumed
    metrics = pd.concat([pd.read_csv(run_dir / task.folder / METRICS_FILE, sep="\t", na_values=["n/a"],
                                     keep_default_na=False) for task in tasks], ignore_index=True)
    metrics["sampler"] = metrics["sampler"].astype(object).fillna("n/a")  # all n/a without synthetic conditions
    models = model_table(run_dir, tasks, metrics)
    write_tsv(run_dir / MODELS_FILE, models)
    write_tsv(run_dir / TRAINING_IMAGES_FILE, training_images_table({"train": data.train,
                                                                      "validation": data.validation}))
    # the report shows where the validation's choice of CNN looks
    saliency = tuple(interpret_study(run_dir).values()) if not models.empty else ()
    images = StudyImages(data, context.pools, config.data.labels, template_outline(config.preprocessing), saliency)
    report = write_report(run_dir, config.name, metrics, memorization, config.seed, quality, images)
    logger.info("study %s: %d runs in %s; report %s", config.name, len(tasks), run_dir, run_dir / "summary.md")
    return {"metrics": metrics, "models": models, "memorization": memorization, "quality": quality, **report, "tasks": len(tasks),
            "n_images": {name: int(len(getattr(data, name).rows)) for name in ("train", "validation", "test")},
            "seeds": np.unique(metrics["seed"]).tolist()}
