"""The study configuration: one YAML file (``pipelines/*.yaml``) validated into dataclasses.

Sections: ``data``, ``preprocessing`` (:class:`T1LinearConfig` fields + ``enabled``, ``jobs``),
``split`` (:class:`SplitConfig`), ``generator`` (:class:`GeneratorConfig` without the input shape),
``trainer`` (:class:`TrainerConfig`), ``samplers``, ``synthetic_per_class``, ``conditions``,
``classifiers``, ``classifier_training``, ``search``, ``executor`` (:class:`ExecutorSection`), ``runs``,
``seed``, ``device``, ``output``.
Unknown keys and bad values raise :class:`ConfigError` naming the key; relative paths are read
relative to the YAML file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medaug.configuration import config_from_dict, config_to_dict
from medaug.data.splits import SplitConfig
from medaug.errors import ConfigError
from medaug.generative.config import GeneratorConfig
from medaug.generative.trainer import TrainerConfig
from medaug.preprocessing.pipeline import T1LinearConfig
from medaug.sampling.samplers import SAMPLERS
from medaug.study.classifier import ClassifierTraining
from medaug.study.training_sets import CONDITIONS

SKLEARN_MODELS = ("svm", "random_forest", "knn", "mlp")
CLASSIFIERS = ("cnn", "cnn-optimized", *(f"sklearn-{m}" for m in SKLEARN_MODELS))
EXECUTORS = ("sequential", "ray")


@dataclass
class TestCohort:
    """An independent test cohort (the thesis evaluates on AIBL this way)."""

    name: str
    bids: str


@dataclass
class DataSection:
    """Where the images come from and which labels are compared."""

    bids: str
    labels: tuple[str, str] = ("CN", "AD")
    positive: str = "AD"
    sessions: str = "baseline"          # baseline: one image per subject; all: every session of train subjects
    stable_diagnosis: bool = False
    independent_tests: tuple[TestCohort, ...] = ()

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        self.independent_tests = tuple(t if isinstance(t, TestCohort) else config_from_dict(TestCohort, t, "test cohort")
                                       for t in self.independent_tests)
        if len(self.labels) != 2 or len(set(self.labels)) != 2:
            raise ConfigError(f"data.labels must be two distinct diagnoses, got {list(self.labels)}")
        if self.positive not in self.labels:
            raise ConfigError(f"data.positive {self.positive!r} is not one of data.labels {list(self.labels)}")
        if self.sessions not in ("baseline", "all"):
            raise ConfigError(f"data.sessions must be 'baseline' or 'all', got {self.sessions!r}")


@dataclass
class PreprocessingSection:
    """``t1-linear`` settings; ``enabled: false`` reads images already in template space."""

    enabled: bool = True
    jobs: int = 1
    size: tuple[int, int, int] = (84, 104, 89)
    pipeline: dict = field(default_factory=dict)   # further T1LinearConfig fields

    def __post_init__(self) -> None:
        self.size = tuple(int(s) for s in self.size)
        if self.jobs < 1:
            raise ConfigError(f"preprocessing.jobs must be ≥ 1, got {self.jobs}")
        self.t1_linear()  # validates the pipeline fields now, not after hours of work

    def t1_linear(self) -> T1LinearConfig:
        return T1LinearConfig.from_dict({**self.pipeline, "size": self.size})


@dataclass
class SamplerSpec:
    """A sampler and its options (see :func:`medaug.sampling.samplers.build_sampler`)."""

    name: str
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.name!r} in samplers; choose among {', '.join(SAMPLERS)}")
        if not isinstance(self.options, dict):
            raise ConfigError(f"samplers entry {self.name!r}: options must be a mapping, got {self.options!r}")
        try:  # the options are checked now, not after the generators are trained
            SAMPLERS[self.name](**self.options)
        except TypeError as error:
            raise ConfigError(f"samplers entry {self.name!r}: bad options {self.options}: {error}") from None


@dataclass
class SearchSection:
    """Random search of the optimized CNN on cross-validation of the train split."""

    trials: int = 8
    folds: int = 3
    epochs: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trials < 1 or self.folds < 2 or self.epochs < 1:
            raise ConfigError("search needs trials ≥ 1, folds ≥ 2 and epochs ≥ 1")


@dataclass
class ExecutorSection:
    """How the study's (classifier, condition, run) tasks run: ``sequential`` in this process or
    ``ray`` (a local Ray, or the cluster at ``address``), each task with ``cpus_per_task`` torch
    threads (both executors, so that results match) and up to ``max_retries`` retries."""

    kind: str = "sequential"
    address: str | None = None          # ray: ray://head:10001 or auto joins a cluster; none starts a local Ray
    cpus_per_task: int = 1
    gpus_per_task: float = 0
    max_retries: int = 1

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"unknown executor.kind {self.kind!r}; choose among {', '.join(EXECUTORS)}")
        if self.address is not None and self.kind != "ray":
            raise ConfigError(f"executor.address is for kind: ray, got kind {self.kind!r}; remove it or set kind: ray")
        for key, low, whole in (("cpus_per_task", 1, True), ("gpus_per_task", 0, False), ("max_retries", 0, True)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or value < low:
                what = "whole number" if whole else "number"
                raise ConfigError(f"executor.{key} must be a {what} ≥ {low}, got {value!r}")


@dataclass
class StudyConfig:
    """A whole augmentation study (thesis §1.4-1.5)."""

    name: str
    data: DataSection
    output: str
    preprocessing: PreprocessingSection = field(default_factory=PreprocessingSection)
    split: SplitConfig = field(default_factory=lambda: SplitConfig(test_per_label=100))
    train_subset: str = "train"          # train: all train subjects; train_n: the train-N subset
    generator: dict = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    samplers: tuple[SamplerSpec, ...] = (SamplerSpec("rhvae-hmc"),)
    synthetic_per_class: tuple[int, ...] = (500,)
    conditions: tuple[str, ...] = ("real", "synthetic", "real+synthetic", "classic")
    classic_copies: tuple[int, ...] = (5,)
    classifiers: tuple[str, ...] = ("cnn",)
    classifier_training: ClassifierTraining = field(default_factory=ClassifierTraining)
    search: SearchSection = field(default_factory=SearchSection)
    executor: ExecutorSection = field(default_factory=ExecutorSection)
    runs: int = 5
    seed: int = 0
    device: str = "cpu"
    mixed_precision: bool = False       # bf16 autocast of generators and CNNs on CUDA
    memorization_quantile: float = 0.05
    allow_uninformative_generators: bool = False  # sample from collapsed generators (smoke tests), with a warning

    def __post_init__(self) -> None:
        sections = {"data": DataSection, "preprocessing": PreprocessingSection, "split": SplitConfig,
                    "trainer": TrainerConfig, "classifier_training": ClassifierTraining, "search": SearchSection,
                    "executor": ExecutorSection}
        for name, cls in sections.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, config_from_dict(cls, value, name))
            elif not isinstance(value, cls):
                raise ConfigError(f"section {name} must be a mapping, got {value!r}")
        self.samplers = tuple(s if isinstance(s, SamplerSpec) else config_from_dict(SamplerSpec, s, "samplers entry")
                              for s in self.samplers)
        for name in ("synthetic_per_class", "conditions", "classic_copies", "classifiers"):
            setattr(self, name, tuple(getattr(self, name)))
        unknown = set(self.conditions) - set(CONDITIONS)
        if unknown:
            raise ConfigError(f"unknown condition(s) {sorted(unknown)}; choose among {', '.join(CONDITIONS)}")
        if "real" not in self.conditions:
            raise ConfigError("conditions must include 'real' (the reference of every comparison)")
        unknown = set(self.classifiers) - set(CLASSIFIERS)
        if unknown or not self.classifiers:
            raise ConfigError(f"unknown classifier(s) {sorted(unknown)}; choose among {', '.join(CLASSIFIERS)}")
        if self.needs_synthetic and (not self.samplers or not self.synthetic_per_class
                                     or min(self.synthetic_per_class) < 1):
            raise ConfigError("synthetic conditions need at least one sampler and synthetic_per_class ≥ 1")
        if "classic" in self.conditions and (not self.classic_copies or min(self.classic_copies) < 1):
            raise ConfigError("condition 'classic' needs classic_copies ≥ 1")
        if self.train_subset not in ("train", "train_n"):
            raise ConfigError(f"train_subset must be 'train' or 'train_n', got {self.train_subset!r}")
        if self.train_subset == "train_n" and self.split.train_n is None:
            raise ConfigError("train_subset: train_n needs split.train_n")
        if self.runs < 1:
            raise ConfigError(f"runs must be ≥ 1, got {self.runs}")
        if not self.device.startswith(("cpu", "cuda")):
            raise ConfigError(f"device must be cpu or cuda[:i], got {self.device!r}")
        self._check_executor_device()
        self.generator_config()  # validates the generator section now

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

    def classifier_settings(self) -> ClassifierTraining:
        """``classifier_training`` on the study's device and precision."""
        return dataclasses.replace(self.classifier_training, device=self.device, mixed_precision=self.mixed_precision)

    @property
    def needs_synthetic(self) -> bool:
        return bool({"synthetic", "real+synthetic"} & set(self.conditions))

    def generator_config(self) -> GeneratorConfig:
        if "input_shape" in self.generator:
            raise ConfigError("generator.input_shape comes from preprocessing.size; remove it")
        return GeneratorConfig.from_dict({**self.generator, "input_shape": (1, *self.preprocessing.size)})

    def to_dict(self) -> dict:
        def plain(value):
            if dataclasses.is_dataclass(value):
                return {k: plain(v) for k, v in config_to_dict(value).items()}
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return value
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict) -> StudyConfig:
        if not isinstance(data, dict):
            raise ConfigError("a study config is a YAML mapping with sections data:, output:, ...")
        missing = [k for k in ("name", "data", "output") if k not in data]
        if missing:
            raise ConfigError(f"study config lacks {', '.join(missing)}")
        return config_from_dict(cls, data, "study")


def load_study_config(path: str | os.PathLike) -> StudyConfig:
    """Read a study YAML (``yaml.safe_load``); paths are resolved relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    try:
        config = StudyConfig.from_dict(data)
    except TypeError as error:
        raise ConfigError(f"{path}: {error}") from None
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    base = path.resolve().parent
    resolve = lambda p: str((base / p).resolve()) if not Path(p).is_absolute() else p  # noqa: E731
    config.data.bids = resolve(config.data.bids)
    config.data.independent_tests = tuple(TestCohort(t.name, resolve(t.bids)) for t in config.data.independent_tests)
    config.output = resolve(config.output)
    return config
