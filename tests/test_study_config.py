from pathlib import Path

import pytest
import yaml

from medaug.errors import ConfigError
from medaug.study.config import StudyConfig, load_study_config
from medaug.study.tasks import study_tasks

BASE = {"name": "t", "output": "out", "data": {"bids": "bids"}}


def _write(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    return path


def test_config_resolves_paths_and_round_trips(tmp_path):
    config = load_study_config(_write(tmp_path, samplers=[{"name": "geometric", "options": {"steps": 5}}],
                                      synthetic_per_class=[10, 20], classic_copies=[2],
                                      executor={"kind": "ray", "address": "auto", "cpus_per_task": 2}))
    assert config.data.bids == str((tmp_path / "bids").resolve())
    assert config.output == str((tmp_path / "out").resolve())
    again = StudyConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config
    assert config.executor.address == "auto" and config.executor.max_retries == 1
    assert config.generator_config().input_shape == (1, 84, 104, 89)
    names = [c.name for c in config.study_conditions()]
    assert names == ["real", "synthetic-geometric-n10", "synthetic-geometric-n20", "real+synthetic-geometric-n10",
                     "real+synthetic-geometric-n20", "classic-x2"]
    assert len(study_tasks(config)) == len(names) * config.runs


@pytest.mark.parametrize("changes, message", [
    ({"colour": 1}, r"unknown option\(s\) colour; allowed: name, data, output"),
    ({"data": {"bids": "b", "positive": "MCI"}}, "data.positive 'MCI' is not one of"),
    ({"data": {"bids": "b", "sessions": "last"}}, "data.sessions: expected one of 'baseline', 'all', got 'last'"),
    ({"conditions": ["real", "gan"]}, r"conditions\[1\].kind: unknown condition 'gan'"),
    ({"conditions": ["synthetic"]}, "must include 'real'"),
    ({"classifiers": ["xgboost"]}, r"classifiers\[0\].name: unknown classifier 'xgboost'"),
    ({"samplers": [{"name": "magic"}]}, "unknown sampler 'magic'"),
    ({"samplers": [{"name": "rhvae-hmc", "options": {"step_sise": 0.1}}]}, r"unknown option\(s\) step_sise"),
    ({"samplers": [{"name": "rhvae-hmc", "options": {"target_acceptance": 2}}]}, "target_acceptance in"),
    ({"samplers": [{"name": "prior", "options": {"anything": 1}}]}, r"unknown option\(s\) anything"),
    ({"generator": {"model": "gan"}}, "unknown model 'gan'"),
    ({"generator": {"input_shape": [1, 2, 3, 4]}}, "comes from preprocessing.size"),
    ({"trainer": {"lr": 1}}, r"trainer: unknown option\(s\) lr"),
    ({"preprocessing": {"pipeline": {"n4": True, "colour": 2}}}, "unknown"),
    ({"split": {"test_per_label": -1}}, "test_per_label must be"),
    ({"train_subset": "train_n"}, "needs split.train_n"),
    ({"runs": 0}, "runs must be"),
    ({"device": "tpu"}, "device: expected cpu, cuda or cuda:<index>"),
    ({"synthetic_per_class": [0]}, r"conditions\[1\].options.per_class must be ≥ 1, got \[0\]"),
    ({"executor": {"kind": "dask"}}, "executor.kind: expected one of 'sequential', 'ray', got 'dask'"),
    ({"classifier_training": {"loader_workers": -1}}, "loader_workers must be ≥ 0"),
    ({"classifiers": [{"name": "cnn", "options": {"training": {"batch_size": 1}}}]}, "batch_size ≥ 2"),
    ({"trainer": {"checkpoint_minutes": -1}}, "checkpoint_minutes must be ≥ 0"),
    ({"executor": {"workers": 2}}, r"executor: unknown option\(s\) workers"),
    ({"executor": {"kind": "ray", "cpus_per_task": 0}}, "executor.cpus_per_task must be ≥ 1"),
    ({"executor": {"cpus_per_task": 1.5}}, "executor.cpus_per_task: expected a whole number, got 1.5"),
    ({"executor": {"kind": "ray", "gpus_per_task": -1}}, "executor.gpus_per_task must be ≥ 0"),
    ({"executor": {"max_retries": -1}}, "executor.max_retries must be"),
    ({"executor": {"address": "auto"}}, "executor.address is for kind: ray"),
    ({"executor": {"gpus_per_task": 1}}, "gpus_per_task > 0 needs device: cuda"),
    ({"device": "cuda", "executor": {"kind": "ray"}}, "needs executor.gpus_per_task > 0"),
    ({"device": "cuda:1", "executor": {"kind": "ray", "gpus_per_task": 1}}, "use device: cuda"),
    ({"executor": {"tasks_at_once": 0}}, "executor.tasks_at_once must be ≥ 1 or auto"),
    ({"samplers": [{"name": "ldm", "generator": {"model": "ldm", "options": {"stage": "autoencoder"}}}]},
     r"samplers\[0\]: this is the shared autoencoder of a latent diffusion model, not a generator"),
    ({"samplers": [{"name": "ldm", "generator": {"model": "ldm"}}], "data": {"bids": "b", "labels": ["CN", "shared"],
                                                                          "positive": "shared"}},
     "data.labels: 'shared' is the folder of the ldm model's shared stage"),
])
def test_bad_configs_name_the_problem(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_study_config(_write(tmp_path, **changes))


def test_missing_or_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_study_config(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study_config(tmp_path / "bad.yaml")
    (tmp_path / "short.yaml").write_text("name: x\n")
    with pytest.raises(ConfigError, match="missing required option.s. data, output"):
        load_study_config(tmp_path / "short.yaml")


def test_shipped_pipelines_are_valid():
    for path in sorted((Path(__file__).parents[1] / "pipelines").glob("*.yaml")):
        config = load_study_config(path)
        assert config.runs >= 1 and "real" in [spec.kind for spec in config.conditions], path
