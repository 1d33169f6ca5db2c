"""A component defined in one place reaches the study YAML, the CLI choices and the validation."""

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import yaml

from medaug.cli import build_parser
from medaug.configuration import Config
from medaug.generative.config import MODELS
from medaug.errors import ConfigError
from medaug.registry import Registry
from medaug.sampling.sampler import Sampler
from medaug.sampling.samplers import SAMPLERS, build_sampler
from medaug.study.classifiers import CLASSIFIERS
from medaug.study.conditions import CONDITIONS, Condition, ConditionKind, Part
from medaug.study.config import StudyConfig

from medaug.study.training_sets import build_training_set


@dataclass
class ShiftOptions(Config):
    section: ClassVar[str] = "shifted sampler options"
    shift: float = 1.0


class ShiftedPrior(Sampler):
    """z ~ N(shift, I): a test sampler."""

    name = "shifted"
    Options = ShiftOptions

    def _latents(self, n, generator):
        return self.options.shift + torch.randn(n, 2, generator=generator), {}


class Doubled(ConditionKind):
    """The real images twice: a test condition."""

    name = "doubled"

    @classmethod
    def parts(cls, condition, real, labels, synthetic, seed):
        return [Part(real, labels, False), Part(real, labels, False)]


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(SAMPLERS._entries, ShiftedPrior.name, ShiftedPrior)
    monkeypatch.setitem(CONDITIONS._entries, Doubled.name, Doubled)


def _choices(parser, command: str, flag: str) -> list:
    sub = parser._subparsers._group_actions[0].choices[command]
    return next(a for a in sub._actions if flag in a.option_strings).choices


def test_a_registered_sampler_and_condition_reach_cli_config_and_training_sets(registered):
    assert "shifted" in _choices(build_parser(), "generate", "--sampler")
    assert build_sampler("shifted", shift=2).config() == {"sampler": "shifted", "shift": 2.0}
    with pytest.raises(ConfigError, match="shifted sampler options.shift: expected a finite number"):
        build_sampler("shifted", shift="far")
    config = StudyConfig.from_dict({"name": "t", "output": "o", "data": {"bids": "b"},
                                    "samplers": [{"name": "shifted", "options": {"shift": 3}}],
                                    "conditions": ["real", "doubled", "real+synthetic"], "synthetic_per_class": [4]})
    assert [c.name for c in config.study_conditions()] == ["real", "doubled", "real+synthetic-shifted-n4"]
    real, labels = torch.rand(6, 1, 2, 2, 2), torch.tensor([0, 1] * 3)
    doubled = build_training_set(real, labels, Condition("doubled", "doubled"))
    assert len(doubled.images) == 12 and not doubled.synthetic.any()
    assert StudyConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config


def test_registries_list_their_components_and_refuse_unknown_names():
    assert {"rhvae-hmc", "random-walk", "geometric", "gmm", "prior", "two-stage", "vamp", "posterior",
            "jitter", "ldm"} == set(SAMPLERS.names())
    assert {"real", "synthetic", "real+synthetic", "classic"} == set(CONDITIONS.names())
    assert {"cnn", "cnn-optimized", "sklearn-svm", "sklearn-knn", "sklearn-random_forest",
            "sklearn-mlp"} == set(CLASSIFIERS.names())
    assert {"vae", "rhvae", "vamp", "rae_l2", "rae_gp", "ldm"} == set(MODELS.names())
    assert "steps" in SAMPLERS.help() and "n_neighbors" in CLASSIFIERS.help()
    with pytest.raises(ConfigError, match="here: unknown sampler 'hmc'; choose among geometric, gmm, jitter"):
        SAMPLERS.get("hmc", "here")
    empty = Registry("widget")
    with pytest.raises(TypeError, match="needs an Options class"):
        empty.register(type("Widget", (), {"name": "w"}))


@dataclass
class ScaledOptions(Config):
    section: ClassVar[str] = "scaled options"
    scale: float = 1.0


def test_a_registered_model_takes_its_own_options_and_no_other_models(monkeypatch):
    from medaug.generative.config import GeneratorConfig
    from medaug.generative.models import build_model
    from medaug.generative.models.vae import VAE

    class ScaledVAE(VAE):
        """A VAE whose decoder output is scaled: a test model."""

        name = "scaled"
        Options = ScaledOptions

    monkeypatch.setitem(MODELS._entries, ScaledVAE.name, ScaledVAE)
    model = build_model(GeneratorConfig(input_shape=(1, 4, 4), model="scaled", options={"scale": 2}))
    assert model.options == ScaledOptions(scale=2.0) and model.config.options == {"scale": 2.0}
    with pytest.raises(ConfigError, match=r"generator.options \(scaled\): unknown option\(s\) temperature; allowed: scale"):
        GeneratorConfig(input_shape=(1, 4, 4), model="scaled", options={"temperature": 2})
    # a VAE records no RHVAE settings, and every RHVAE setting is recorded, defaults filled in
    assert GeneratorConfig(input_shape=(1, 4, 4), model="vae").to_dict()["options"] == {}
    rhvae = GeneratorConfig(input_shape=(1, 4, 4), options={"temperature": 2}).to_dict()["options"]
    assert rhvae["temperature"] == 2.0 and rhvae["leapfrog_steps"] == 3 and "pseudo_inputs" not in rhvae


def test_the_older_flat_spelling_and_saved_configs_still_load(tmp_path, caplog):
    import json
    import logging

    from medaug.generative.config import GeneratorConfig
    from medaug.generative.models import build_model
    from medaug.generative.persistence import load_generator, save_generator

    with caplog.at_level(logging.WARNING):
        flat = GeneratorConfig.from_dict({"input_shape": [1, 4, 4], "model": "rhvae", "temperature": 2.0,
                                          "rae_latent_weight": 0.5, "pseudo_inputs": 50})
    assert flat.options["temperature"] == 2.0 and "latent_weight" not in flat.options
    assert "generator.temperature: an older spelling, read as generator.options.temperature" in caplog.text
    assert "generator.rae_latent_weight: not an option of the rhvae model; ignored" in caplog.text
    assert "pseudo_inputs" not in caplog.text  # another model's default, as older config.json files hold it
    vae = GeneratorConfig.from_dict({"input_shape": [1, 4, 4], "model": "vae", "temperature": 3.0})
    assert vae == GeneratorConfig(input_shape=(1, 4, 4), model="vae")  # an RHVAE setting cannot change a VAE
    with pytest.raises(ConfigError, match="generator: unknown option.s. tempreature"):
        GeneratorConfig.from_dict({"input_shape": [1, 4, 4], "tempreature": 2.0})
    # a model folder saved before per-model options: config.json lists every model's settings flat
    torch.manual_seed(0)
    model = build_model(GeneratorConfig(input_shape=(1, 4, 4), hidden=(8,), options={"metric_hidden": 4}))
    save_generator(model, tmp_path)
    recorded = json.loads((tmp_path / "config.json").read_text())
    options = recorded.pop("options")
    older = {**recorded, **options, "pseudo_inputs": 50, "rae_latent_weight": 0.01, "rae_decoder_weight": 0.0001}
    (tmp_path / "config.json").write_text(json.dumps(older))
    loaded = load_generator(tmp_path)
    assert loaded.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
