"""Every configuration value is checked before any work: exit 2, one line naming the key, nothing written."""

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest
import yaml

from medaug.cli import main
from medaug.configuration import Config
from medaug.errors import ConfigError

BASE = {"name": "t", "output": "out", "data": {"bids": "bids"}}


@dataclass
class Nested(Config):
    section: ClassVar[str] = "inner"
    rate: float = 0.5


@dataclass
class Example(Config):
    section: ClassVar[str] = "example"
    count: int = 1
    sizes: tuple[int, ...] = (1, 2)
    mode: Literal["a", "b"] = "a"
    scale: float | Literal["auto"] = "auto"
    inner: Nested = field(default_factory=Nested)
    label: str | None = None
    extra: Nested | None = None


@pytest.mark.parametrize("data, message", [
    ({"count": "abc"}, "example.count: expected a whole number, got 'abc'"),
    ({"count": 1.5}, "example.count: expected a whole number, got 1.5"),
    ({"count": True}, "example.count: expected a whole number, got True"),
    ({"sizes": "abc"}, "example.sizes: expected a list of whole numbers, got 'abc'"),
    ({"sizes": [1, 2.5]}, r"example.sizes\[1\]: expected a whole number, got 2.5"),
    ({"mode": "c"}, "example.mode: expected one of 'a', 'b', got 'c'"),
    ({"scale": float("nan")}, "example.scale: expected a finite number or one of 'auto', got nan"),
    ({"scale": "automatic"}, "example.scale: expected a finite number or one of 'auto'"),
    ({"inner": {"rate": "x"}}, "example.inner.rate: expected a finite number, got 'x'"),
    ({"inner": {"rat": 1}}, "example.inner: unknown option.s. rat; allowed: rate"),
    ({"label": 0}, "example.label: expected a string or null, got 0"),
    ({"extra": {"rate": "x"}}, "example.extra.rate: expected a finite number, got 'x'"),  # optional section
    ({"extra": 1}, "example.extra: expected a mapping of inner options or null, got 1"),
    ({"colour": 1}, "example: unknown option.s. colour; allowed: count, sizes, mode, scale, inner, label, extra"),
])
def test_typed_configs_refuse_wrong_values_by_key(data, message):
    with pytest.raises(ConfigError, match=message):
        Example.from_dict(data)


def test_typed_configs_convert_and_round_trip():
    config = Example.from_dict({"count": 3, "sizes": [4, 5], "scale": 2, "inner": {"rate": 1}})
    assert config.sizes == (4, 5) and config.scale == 2.0 and isinstance(config.scale, float)
    assert config.inner == Nested(1.0)
    assert Example.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="example.count"):
        Example(count="3")  # built from Python, the types are checked too


def _run_exits_2(tmp_path, capsys, changes: dict, message: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert message in err, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("medaug run: error:")
    assert not (tmp_path / "out").exists() and not (tmp_path / "5").exists()


@pytest.mark.parametrize("changes, message", [
    ({"seed": "abc"}, "seed: expected a whole number, got 'abc'"),
    ({"seed": 1.5}, "seed: expected a whole number, got 1.5"),
    ({"seed": -1}, "seed: a seed is a whole number in [0, 2^32)"),
    ({"runs": 2.5}, "runs: expected a whole number, got 2.5"),
    ({"trainer": {"max_steps": 2.5}}, "trainer.max_steps: expected a whole number, got 2.5"),
    ({"trainer": {"lr": 1}}, "trainer: unknown option(s) lr; allowed: learning_rate"),
    ({"conditions": ["real", {"kind": "synthetic", "options": {"per_class": [2.5]}}]},
     "conditions[1].options.per_class[0]: expected a whole number, got 2.5"),
    ({"synthetic_per_class": [2.5]}, "conditions[1].options.per_class[0]: expected a whole number"),  # older spelling
    ({"generator": {"hidden": "abc"}}, "generator.hidden: expected a list of whole numbers, got 'abc'"),
    ({"generator": {"hidden": [-5]}}, "hidden and channels need layer sizes ≥ 1"),
    ({"classifiers": [{"name": "cnn", "options": {"training": {"learning_rate": float("nan")}}}]},
     "classifiers[0].options.training.learning_rate: expected a finite number, got nan"),
    ({"memorization_quantile": 5}, "memorization_quantile must be in (0, 1), got 5.0"),
    ({"device": 0}, "device: expected a string, got 0"),
    ({"device": "gpu"}, "device: expected cpu, cuda or cuda:<index>, got 'gpu'"),
    ({"output": 5}, "output: expected a string, got 5"),
    ({"preprocessing": {"size": "abc"}}, "preprocessing.size: expected a list of 3 values"),
    ({"samplers": [{"name": "rhvae-hmc", "options": {"step_sise": 0.1}}]},
     "samplers[0].options: unknown option(s) step_sise; allowed: steps"),
    ({"samplers": [{"name": "prior", "options": {"anything": 1}}]},
     "samplers[0].options: unknown option(s) anything; allowed: none"),
    ({"samplers": [{"name": "rhvae-hmc", "options": {"steps": "many"}}]},
     "samplers[0].options.steps: expected a whole number, got 'many'"),
    ({"samplers": [{"name": "magic"}]}, "samplers[0].name: unknown sampler 'magic'; choose among"),
    ({"conditions": ["real", "gan"]}, "conditions[1].kind: unknown condition 'gan'; choose among classic, real"),
    ({"classifiers": ["xgboost"]}, "classifiers[0].name: unknown classifier 'xgboost'; choose among cnn"),
    ({"classifiers": [{"name": "sklearn-knn", "options": {"k": 3}}]},
     "classifiers[0].options: unknown option(s) k; allowed: n_neighbors"),
    ({"classifiers": ["sklearn-knn"], "classifier_options": {"sklearn-knn": {"k": 3}}},  # older spelling
     "classifiers[0].options: unknown option(s) k; allowed: n_neighbors"),
    ({"classifiers": ["cnn", "cnn"]}, "classifiers: cnn given twice; give each once"),
    ({"conditions": ["real", {"kind": "classic", "options": {"copies": [1, 1]}}]},
     "conditions: classic-x1 given twice; give each once"),
    ({"classifier_options": {"sklearn-knn": {}}}, "classifier_options.sklearn-knn: 'sklearn-knn' is not in classifiers"),
])
def test_run_refuses_each_bad_value_before_any_work(tmp_path, capsys, changes, message):
    _run_exits_2(tmp_path, capsys, changes, message)


@pytest.mark.parametrize("section, message", [
    ({"trainer": {"max_epoch": 3}}, "trainer: unknown option(s) max_epoch"),
    ({"trainer": {"learning_rate": "fast"}}, "trainer.learning_rate: expected a finite number, got 'fast'"),
    ({"generator": {"latent_dim": 2.5}}, "generator.latent_dim: expected a whole number, got 2.5"),
    ({"colour": {}}, "unknown section(s) ['colour']"),
])
def test_train_generator_refuses_bad_settings_before_reading_images(tmp_path, capsys, section, message):
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(section))
    with pytest.raises(SystemExit) as exit_info:
        main(["train-generator", str(tmp_path / "missing.tsv"), "--label", "AD", "--out", str(tmp_path / "m"),
              "--config", str(config)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("section, message", [
    ({"training": {"epochs": 2.5}}, "training.epochs: expected a whole number, got 2.5"),
    ({"flow": {"made_hidden": "wide"}}, "flow.made_hidden: expected a whole number, got 'wide'"),
    ({"training": {"seed": -3}}, "training.seed: a seed is a whole number"),
])
def test_longitudinal_fit_refuses_bad_settings_before_reading_images(tmp_path, capsys, section, message):
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(section))
    with pytest.raises(SystemExit) as exit_info:
        main(["longitudinal", "fit", str(tmp_path / "missing.tsv"), "--label", "AD", "--out", str(tmp_path / "m"),
              "--config", str(config)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("argv, message", [
    (["--sampler", "prior", "--steps", "3"], "the prior sampler takes no steps option"),
    (["--sampler", "gmm", "--n-components", "0"], "n_components must be ≥ 1"),
    (["--sampler", "gmm", "--n-components", "2.5"], "gmm sampler options.n_components: expected a whole number"),
    (["--sampler", "rhvae-hmc", "--step-sise", "0.1"], "unrecognized arguments: --step-sise"),
    (["--sampler", "rhvae-hmc", "--steps", "many"], "rhvae-hmc sampler options.steps: expected a whole number"),
    (["--sampler", "rhvae-hmc", "--target-acceptance", "1.5"], "target_acceptance in (0, 1)"),
    (["--sampler", "rhvae-hmc", "--seed", "-1"], "--seed: a seed is a whole number"),
    (["--sampler", "rhvae-hmc", "--batch-size", "0"], "argument --batch-size: must be a whole number ≥ 1"),
])
def test_generate_refuses_bad_sampler_options_before_loading_the_model(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(tmp_path / "no-model"), "-n", "2", "--out", str(tmp_path / "syn"), *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "syn").exists()
