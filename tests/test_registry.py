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
from medaug.study.tasks import study_conditions
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
    assert [c.name for c in study_conditions(config)] == ["real", "doubled", "real+synthetic-shifted-n4"]
    real, labels = torch.rand(6, 1, 2, 2, 2), torch.tensor([0, 1] * 3)
    doubled = build_training_set(real, labels, Condition("doubled", "doubled"))
    assert len(doubled.images) == 12 and not doubled.synthetic.any()
    assert StudyConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config


def test_registries_list_their_components_and_refuse_unknown_names():
    assert {"rhvae-hmc", "random-walk", "geometric", "gmm", "prior", "two-stage", "vamp", "posterior",
            "jitter"} == set(SAMPLERS.names())
    assert {"real", "synthetic", "real+synthetic", "classic"} == set(CONDITIONS.names())
    assert {"cnn", "cnn-optimized", "sklearn-svm", "sklearn-knn", "sklearn-random_forest",
            "sklearn-mlp"} == set(CLASSIFIERS.names())
    assert {"vae", "rhvae", "vamp", "rae_l2", "rae_gp"} == set(MODELS.names())
    assert "steps" in SAMPLERS.help() and "n_neighbors" in CLASSIFIERS.help()
    with pytest.raises(ConfigError, match="here: unknown sampler 'hmc'; choose among geometric, gmm, jitter"):
        SAMPLERS.get("hmc", "here")
    empty = Registry("widget")
    with pytest.raises(TypeError, match="needs an Options class"):
        empty.register(type("Widget", (), {"name": "w"}))
