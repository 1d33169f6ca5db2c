"""The study configuration: one YAML file (``pipelines/*.yaml``) validated into dataclasses.

Sections: ``data``, ``preprocessing`` (:class:`T1LinearConfig` fields + ``enabled``, ``jobs``),
``split`` (:class:`SplitConfig`), ``generator`` (:class:`GeneratorConfig` without the input shape),
``trainer`` (:class:`TrainerConfig`), ``samplers``, ``conditions``, ``classifiers``, ``executor``
(:class:`ExecutorSection`), ``keep``, ``runs``, ``seed``, ``device``, ``output``. Samplers,
conditions and classifiers are entries of their registries (:mod:`medaug.registry`) with their
own ``options``, validated by the registered options dataclasses (a condition's sizes, a CNN's
``training`` and ``search``); an entry without options may be its bare name. The older spelling
(``synthetic_per_class``, ``classic_copies``, ``classifier_options``, ``classifier_training``,
``search`` at the top) is still read, with a warning. Unknown keys and bad values raise
:class:`ConfigError` naming the key, before any work; relative paths are read relative to the
YAML file. This module imports the registries; none of their components imports it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal


from medaug.configuration import Config, check_device, check_seed
from medaug.data.splits import SplitConfig
from medaug.errors import ConfigError, InputDataError
from medaug.io import read_yaml
from medaug.generative.config import MODELS, GeneratorConfig
from medaug.generative.models import SHARED_FOLDER
from medaug.generative.trainer import TrainerConfig
from medaug.preprocessing import size_problem
from medaug.preprocessing.pipeline import T1LinearConfig
from medaug.sampling.samplers import SAMPLERS
from medaug.simulation.example_cohort import ExampleCohortConfig
from medaug.study.classifiers import CLASSIFIERS
from medaug.study.conditions import CONDITIONS, Condition

logger = logging.getLogger(__name__)


@dataclass
class TestCohort(Config):
    """An independent test cohort (the thesis evaluates on AIBL this way)."""

    section: ClassVar[str] = "data.independent_tests"

    name: str
    bids: str


@dataclass
class SimulatedCohort(ExampleCohortConfig):
    """``data.bids`` is an example cohort simulated with these :class:`ExampleCohortConfig` settings
    (built there when missing, resumed when unfinished); ``jobs`` subjects are simulated in parallel."""

    section: ClassVar[str] = "data.simulate"

    jobs: int = 1

    def validate(self) -> None:
        try:
            super().validate()
        except ConfigError as error:
            raise ConfigError(f"{self.section}: {error}") from None
        check_seed(self.seed, f"{self.section}.seed")
        if self.jobs < 1:
            raise ConfigError(f"data.simulate.jobs must be ≥ 1, got {self.jobs}")

    def cohort_config(self) -> ExampleCohortConfig:
        """The simulation settings (all but ``jobs``, which does not change the cohort)."""
        return ExampleCohortConfig.from_dict({key: value for key, value in self.to_dict().items() if key != "jobs"})


@dataclass
class DataSection(Config):
    """Where the images come from and which labels are compared."""

    section: ClassVar[str] = "data"

    bids: str | None = None   # raw BIDS (preprocessed by the study), or the cohort table of ``caps``
    labels: tuple[str, str] = ("CN", "AD")
    positive: str = "AD"
    sessions: Literal["baseline", "all"] = "baseline"  # baseline: one image per subject; all: every session of train subjects
    stable_diagnosis: bool = False
    independent_tests: tuple[TestCohort, ...] = ()
    simulate: SimulatedCohort | None = None  # data.bids is a simulated cohort, built when missing
    caps: str | None = None        # Clinica t1-linear outputs: the study's preprocessing is skipped
    labels_tsv: str | None = None  # the ClinicaDL labels TSV of ``caps`` (else participants from ``bids``)

    @classmethod
    def from_dict(cls, data, where=None):
        if isinstance(data, dict) and isinstance(data.get("labels"), str):
            raise ConfigError(f"data.labels names the two diagnoses compared (for example [CN, AD]), got "
                              f"{data['labels']!r}; give a labels TSV as data.labels_tsv")
        return super().from_dict(data, where)

    @property
    def sources(self) -> list[str]:
        """The input folders of the study's own images (never written to)."""
        return [path for path in (self.bids, self.caps) if path]

    def validate(self) -> None:
        if self.bids is None and self.caps is None:
            raise ConfigError("data needs bids: (a BIDS dataset) or caps: (Clinica t1-linear outputs)")
        if self.caps is not None and (self.bids is None) == (self.labels_tsv is None):
            raise ConfigError("data.caps needs its cohort table: data.labels_tsv (a ClinicaDL labels TSV) or "
                              "data.bids (participants and sessions of the BIDS dataset it came from), not both")
        if self.labels_tsv is not None and self.caps is None:
            raise ConfigError("data.labels_tsv is the cohort table of data.caps; set data.caps, or use data.bids")
        if self.simulate is not None and (self.caps is not None or self.bids is None):
            raise ConfigError("data.simulate builds a BIDS cohort in data.bids; remove data.caps")
        if len(set(self.labels)) != 2:
            raise ConfigError(f"data.labels must be two distinct diagnoses, got {list(self.labels)}")
        if self.positive not in self.labels:
            raise ConfigError(f"data.positive {self.positive!r} is not one of data.labels {list(self.labels)}")
        if self.simulate is not None and not set(self.labels) <= set(self.simulate.labels):
            raise ConfigError(f"data.labels {list(self.labels)} are not all in data.simulate.labels "
                              f"{list(self.simulate.labels)}; simulate both diagnoses")

    def to_dict(self) -> dict:
        data = super().to_dict()
        for key in ("simulate", "caps", "labels_tsv"):  # the config.yaml of older studies still matches
            if data[key] is None:
                del data[key]
        return data


@dataclass
class PreprocessingSection(Config):
    """``t1-linear`` settings; ``enabled: false`` reads images already in template space."""

    section: ClassVar[str] = "preprocessing"

    enabled: bool = True
    jobs: int = 1
    size: tuple[int, int, int] = (84, 104, 89)
    pipeline: dict = field(default_factory=dict)   # further T1LinearConfig fields

    def validate(self) -> None:
        if self.jobs < 1:
            raise ConfigError(f"preprocessing.jobs must be ≥ 1, got {self.jobs}")
        problem = size_problem(self.size)
        if problem:
            raise ConfigError(f"preprocessing.size: {problem}")
        self.t1_linear()  # validates the pipeline fields now, not after hours of work

    def t1_linear(self) -> T1LinearConfig:
        return T1LinearConfig.from_dict({**self.pipeline, "size": self.size}, where="preprocessing.pipeline")


@dataclass
class SamplerSpec(Config):
    """A registered sampler (:mod:`medaug.sampling.samplers`) and its options, validated now.
    ``label`` (default: the sampler's name) names its pool: the folder ``synthetic/<label>``, the
    pool's seed and the conditions ``…-<label>-n<N>``, so one study can compare two option sets of
    one sampler. ``generator`` / ``trainer`` give the entry generators of its own (for example
    ``{model: ldm}`` beside the study's RHVAE), trained per class like the study's."""

    section: ClassVar[str] = "samplers"

    name: str
    options: dict = field(default_factory=dict)
    label: str | None = None
    generator: dict | None = None   # this entry's own generators: keys over the study's generator section
    trainer: dict | None = None     # and their training: keys over the study's trainer section

    @property
    def pool(self) -> str:
        """The pool's name: ``label``, else the sampler's name."""
        return self.label or self.name

    def validate(self) -> None:
        SAMPLERS.get(self.name, f"{self.section}.name")
        SAMPLERS.options(self.name, self.options, where=f"{self.section}.options")
        if self.label is not None and not POOL_LABEL.fullmatch(self.label):
            raise ConfigError(f"{self.section}.label {self.label!r}: use letters, digits, '-', '_' and '.' "
                              "(it names a folder), starting with a letter or digit")

    def to_dict(self) -> dict:
        data = super().to_dict()
        for key in ("label", "generator", "trainer"):  # the config.yaml of older studies still matches
            if data[key] is None:
                del data[key]
        return data


POOL_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class ConditionSpec(Config):
    """A registered condition kind (:mod:`medaug.study.conditions`) and its options, validated now."""

    section: ClassVar[str] = "conditions"

    kind: str
    options: dict = field(default_factory=dict)

    def validate(self) -> None:
        CONDITIONS.get(self.kind, f"{self.section}.kind")
        self.parsed()

    def parsed(self) -> Config:
        return CONDITIONS.options(self.kind, self.options, where=f"{self.section}.options")

    def variants(self, pools: tuple[str, ...]) -> list[Condition]:
        """Its named training sets, given the study's synthetic pools."""
        return CONDITIONS.get(self.kind).variants(self.parsed(), pools)


@dataclass
class ClassifierSpec(Config):
    """A registered classifier (:mod:`medaug.study.classifiers`) and its options, validated now."""

    section: ClassVar[str] = "classifiers"

    name: str
    options: dict = field(default_factory=dict)

    def validate(self) -> None:
        CLASSIFIERS.get(self.name, f"{self.section}.name")
        self.parsed()

    def parsed(self) -> Config:
        return CLASSIFIERS.options(self.name, self.options, where=f"{self.section}.options")


def _entry(value, key: str):
    """A bare registered name is the entry ``{key: name}``."""
    return {key: value} if isinstance(value, str) else value


def _spelled(entry: dict, key: str):
    """An entry as the YAML spells it: its bare name when it has no options."""
    return entry[key] if not entry["options"] else entry


OLDER_SPELLING = {  # top-level key → (section, the option its entries take it as)
    "synthetic_per_class": ("conditions", "per_class"), "classic_copies": ("conditions", "copies"),
    "classifier_training": ("classifiers", "training"), "search": ("classifiers", "search")}


def _read_older_spelling(data: dict) -> dict:
    """Move the older top-level keys into the entries whose options take them (with a warning)."""
    data = dict(data)
    for section, key in (("conditions", "kind"), ("classifiers", "name")):
        if isinstance(data.get(section), (list, tuple)):
            data[section] = [_entry(value, key) for value in data[section]]
    older = [key for key in (*OLDER_SPELLING, "classifier_options") if key in data]
    if not older:
        return data
    logger.warning("%s: an older spelling, read into the options of the conditions and classifiers; write for "
                   "example conditions: [real, {kind: classic, options: {copies: [5]}}] and classifiers: "
                   "[{name: cnn, options: {training: {epochs: 50}}}]", ", ".join(older))
    defaults = {"conditions": [{"kind": c.kind} for c in StudyConfig.defaults("conditions")],
                "classifiers": [{"name": c.name} for c in StudyConfig.defaults("classifiers")]}
    for section in ("conditions", "classifiers"):
        data[section] = [dict(entry) if isinstance(entry, Mapping) else entry for entry in data.get(section, defaults[section])]
    named = {entry.get("name"): entry for entry in data["classifiers"] if isinstance(entry, Mapping)}
    options = data.pop("classifier_options", None) or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"classifier_options: expected a mapping of classifier name → options, got {options!r}")
    for name, given in options.items():
        if name not in named:
            raise ConfigError(f"classifier_options.{name}: {name!r} is not in classifiers {list(named)}")
        named[name]["options"] = {**(given or {}), **(named[name].get("options") or {})}
    for old, (section, option) in OLDER_SPELLING.items():
        if old not in data:
            continue
        value = data.pop(old)
        key, registry = ("kind", CONDITIONS) if section == "conditions" else ("name", CLASSIFIERS)
        for entry in data[section]:
            if (isinstance(entry, Mapping) and entry.get(key) in registry
                    and option in registry.get(entry[key]).Options.option_names()):
                entry["options"] = {option: value, **(entry.get("options") or {})}
    return data


@dataclass
class ExecutorSection(Config):
    """How the study's (classifier, condition, run) tasks run: ``sequential`` on this machine (one
    at a time in this process, or ``tasks_at_once`` in worker processes) or ``ray`` (a local Ray, or
    the cluster at ``address``), each task with ``cpus_per_task`` torch threads (every executor, so
    that results match) and up to ``max_retries`` retries."""

    section: ClassVar[str] = "executor"

    kind: Literal["sequential", "ray"] = "sequential"
    address: str | None = None          # ray: ray://head:10001 or auto joins a cluster; none starts a local Ray
    cpus_per_task: int = 1
    gpus_per_task: float = 0.0
    max_retries: int = 1
    # sequential: tasks at once, each in its own process (1: one at a time, in this process); auto: on
    # a GPU as many as its free memory holds at the first task's peak, on the CPU one
    tasks_at_once: int | Literal["auto"] = "auto"

    def validate(self) -> None:
        if self.address is not None and self.kind != "ray":
            raise ConfigError(f"executor.address is for kind: ray, got kind {self.kind!r}; remove it or set kind: ray")
        for key, low in (("cpus_per_task", 1), ("gpus_per_task", 0), ("max_retries", 0)):
            if getattr(self, key) < low:
                raise ConfigError(f"executor.{key} must be ≥ {low}, got {getattr(self, key)!r}")
        if self.tasks_at_once != "auto" and self.tasks_at_once < 1:
            raise ConfigError(f"executor.tasks_at_once must be ≥ 1 or auto, got {self.tasks_at_once!r}")


@dataclass
class KeepSection(Config):
    """Intermediates a study keeps on disk. Dropping them saves space (the demo folder stays under
    150 MB) at a price: ``crop_images: false`` redoes an image's registration when
    ``preprocessing.size`` changes; ``generator_checkpoints: false`` deletes a finished training's
    ``checkpoint.pt`` (its optimizer state, about 3× the model), which only resumes an unfinished one."""

    section: ClassVar[str] = "keep"

    crop_images: bool = True            # the 1 mm desc-Crop CAPS image (about 22 MB each)
    generator_checkpoints: bool = True


@dataclass
class StudyConfig(Config):
    """A whole augmentation study (thesis §1.4-1.5)."""

    section: ClassVar[str] = ""

    name: str
    data: DataSection
    output: str
    preprocessing: PreprocessingSection = field(default_factory=PreprocessingSection)
    split: SplitConfig = field(default_factory=lambda: SplitConfig(test_per_label=100))
    train_subset: Literal["train", "train_n"] = "train"  # train: all train subjects; train_n: the train-N subset
    generator: dict = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    samplers: tuple[SamplerSpec, ...] = (SamplerSpec("rhvae-hmc"),)
    conditions: tuple[ConditionSpec, ...] = tuple(ConditionSpec(kind) for kind in
                                                  ("real", "synthetic", "real+synthetic", "classic"))
    classifiers: tuple[ClassifierSpec, ...] = (ClassifierSpec("cnn"),)
    executor: ExecutorSection = field(default_factory=ExecutorSection)
    keep: KeepSection = field(default_factory=KeepSection)
    runs: int = 5
    seed: int = 0
    device: str = "cpu"
    mixed_precision: bool = False       # bf16 autocast of generators and CNNs (CUDA or CPU; the RHVAE metric stays in fp32)
    memorization_quantile: float = 0.05  # the copy audit's τ (quantile of the real leave-one-out nearest distances)
    novelty_quantile: float | None = None  # drop samples nearer to a training image than this quantile (None: keep all)
    allow_uninformative_generators: bool = False  # sample from collapsed generators (smoke tests), with a warning

    @classmethod
    def from_dict(cls, data, where=None):
        if isinstance(data, Mapping):
            data = _read_older_spelling(data)
        return super().from_dict(data, where)

    @classmethod
    def defaults(cls, name: str):
        """The default value of field ``name``."""
        default = cls.__dataclass_fields__[name]
        return default.default_factory() if default.default is dataclasses.MISSING else default.default

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["conditions"] = [_spelled(entry, "kind") for entry in data["conditions"]]
        data["classifiers"] = [_spelled(entry, "name") for entry in data["classifiers"]]
        return data

    @property
    def pools(self) -> tuple[str, ...]:
        """The synthetic pools: each sampler entry's label."""
        return tuple(spec.pool for spec in self.samplers)

    def study_conditions(self) -> list[Condition]:
        """Every variant of every condition, in config order."""
        return [variant for spec in self.conditions for variant in spec.variants(self.pools)]

    @property
    def synthetic_per_class(self) -> int:
        """Synthetic images per class that each pool must hold (the largest a condition uses)."""
        return max((CONDITIONS.get(spec.kind).synthetic_per_class(spec.parsed()) for spec in self.conditions), default=0)

    def classifier(self, name: str) -> ClassifierSpec:
        return next(spec for spec in self.classifiers if spec.name == name)

    def validate(self) -> None:
        pools = [spec.pool for spec in self.samplers]
        repeated = sorted({pool for pool in pools if pools.count(pool) > 1})
        if repeated:
            raise ConfigError(f"samplers: two entries name the pool {', '.join(repeated)}; give each entry of one "
                              "sampler its own label (for example {name: rhvae-hmc, label: rhvae-hmc-fixed, options: …})")
        if "real" not in [spec.kind for spec in self.conditions]:
            raise ConfigError("conditions must include 'real' (the reference of every comparison)")
        if not self.classifiers:
            raise ConfigError(f"classifiers is empty; choose among {', '.join(CLASSIFIERS.names())}")
        for section, names in (("classifiers", [spec.name for spec in self.classifiers]),
                               ("conditions", [c.name for c in self.study_conditions()])):
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ConfigError(f"{section}: {', '.join(repeated)} given twice; give each once")
        if self.train_subset == "train_n" and self.split.train_n is None:
            raise ConfigError("train_subset: train_n needs split.train_n")
        if self.runs < 1:
            raise ConfigError(f"runs must be ≥ 1, got {self.runs}")
        if not 0.0 < self.memorization_quantile < 1.0:
            raise ConfigError(f"memorization_quantile must be in (0, 1), got {self.memorization_quantile}")
        if self.novelty_quantile is not None and not 0.0 < self.novelty_quantile < 1.0:
            raise ConfigError(f"novelty_quantile must be in (0, 1) or null (keep every sample), got {self.novelty_quantile}")
        check_seed(self.seed, "seed")
        check_device(self.device, "device")
        self._check_executor_device()
        if "write_crop" in self.preprocessing.pipeline:
            raise ConfigError("preprocessing.pipeline.write_crop is set by keep.crop_images; remove it")
        self.generator_config()  # validates the generator section now
        for index, spec in enumerate(self.samplers):
            sampler, generator = SAMPLERS.get(spec.name), self.generator_config(spec)
            models, own = sampler.models, generator.model
            self.trainer_config(spec)
            if models is not None and self.needs_synthetic and own not in models:
                raise ConfigError(f"samplers[{index}]: the {spec.name} sampler needs a generator.model in "
                                  f"{', '.join(models)}, got {own}; change generator.model, give the entry its "
                                  f"own (generator: {{model: {models[0]}}}) or change the sampler")
            problem = sampler.generator_problem(generator) if self.needs_synthetic else None
            if problem:
                raise ConfigError(f"samplers[{index}]: {problem}")
            if MODELS.get(own).shared_stage(generator) is not None and SHARED_FOLDER in self.data.labels:
                raise ConfigError(f"data.labels: {SHARED_FOLDER!r} is the folder of the {own} model's shared stage "
                                  f"(samplers[{index}]); rename that label")

    def _check_executor_device(self) -> None:
        executor = self.executor
        if executor.gpus_per_task > 0 and self.device == "cpu":
            raise ConfigError("executor.gpus_per_task > 0 needs device: cuda; set gpus_per_task: 0 for device: cpu")
        if executor.kind == "ray" and self.device.startswith("cuda"):
            if executor.gpus_per_task == 0:
                raise ConfigError("device: cuda with executor.kind: ray needs executor.gpus_per_task > 0 "
                                  "(Ray hides the GPUs from tasks that request none)")
            if self.device not in ("cuda", "cuda:0"):
                raise ConfigError(f"device {self.device!r} with executor.kind: ray: use device: cuda "
                                  "(Ray gives each task its own GPU, visible as cuda:0)")

    def t1_linear(self) -> T1LinearConfig:
        """The preprocessing pipeline, writing the 1 mm crop images when ``keep.crop_images``."""
        return dataclasses.replace(self.preprocessing.t1_linear(), write_crop=self.keep.crop_images)

    @property
    def needs_synthetic(self) -> bool:
        return any(CONDITIONS.get(spec.kind).uses_synthetic for spec in self.conditions)

    def generator_config(self, spec: SamplerSpec | None = None) -> GeneratorConfig:
        """The generator section, with the keys of ``spec.generator`` over it when given."""
        own = (spec.generator if spec is not None else None) or {}
        if "input_shape" in {**self.generator, **own}:
            raise ConfigError("generator.input_shape comes from preprocessing.size; remove it")
        if own and "model" in own and own["model"] != self.generator.get("model") and "options" not in own:
            own = {**own, "options": {}}  # another model: the study's model options are not its own
        return GeneratorConfig.from_dict({**self.generator, **own, "input_shape": (1, *self.preprocessing.size)},
                                         where="generator" if not own else f"samplers ({spec.pool}).generator")

    def trainer_config(self, spec: SamplerSpec | None = None) -> TrainerConfig:
        """The trainer section, with the keys of ``spec.trainer`` over it when given."""
        own = (spec.trainer if spec is not None else None) or {}
        return TrainerConfig.from_dict({**self.trainer.to_dict(), **own},
                                       where="trainer" if not own else f"samplers ({spec.pool}).trainer")


def load_study_config(path: str | os.PathLike) -> StudyConfig:
    """Read a study YAML (``yaml.safe_load``); paths are resolved relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config {path} not found")
    data = read_yaml(path, "give a study YAML (see pipelines/*.yaml)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a study config is a YAML mapping with sections name:, data:, output:, ...")
    try:
        config = StudyConfig.from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    base = path.resolve().parent
    resolve = lambda p: str((base / p).resolve()) if not Path(p).is_absolute() else p  # noqa: E731
    for key in ("bids", "caps", "labels_tsv"):
        if getattr(config.data, key) is not None:
            setattr(config.data, key, resolve(getattr(config.data, key)))
    config.data.independent_tests = tuple(TestCohort(t.name, resolve(t.bids)) for t in config.data.independent_tests)
    config.output = resolve(config.output)
    return config


def load_study(study_dir: str | os.PathLike) -> StudyConfig:
    """The resolved config a study folder recorded (its ``config.yaml``, read with ``safe_load``)."""
    path = Path(study_dir) / "config.yaml"
    if not path.is_file():
        raise InputDataError(f"{study_dir} is not a study folder (no config.yaml); give the output folder of "
                             "`medaug run`")
    return StudyConfig.from_dict(read_yaml(path, "rerun `medaug run` on the study"))
