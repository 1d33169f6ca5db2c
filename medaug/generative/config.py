"""Configuration of a generative model; round-trips through JSON / YAML (``to_dict`` / ``from_dict``).

The common settings (shape, latent size, networks, likelihood) are fields; a model's own settings
(an RHVAE's flow and metric, a VAMP prior's pseudo-inputs, an RAE's penalty weights) are its
``Options`` dataclass, given as ``options`` and stored complete (defaults filled in).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from medaug.configuration import Config
from medaug.errors import ConfigError
from medaug.registry import Registry

logger = logging.getLogger(__name__)

MODELS = Registry("model", "medaug.generative.models")  # one module per model in that package
NETWORKS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
RENAMED = {"rae_latent_weight": "latent_weight", "rae_decoder_weight": "decoder_weight"}  # flat name → option


@dataclass
class GeneratorConfig(Config):
    """Model, networks and the model's ``options`` (defaults: thesis Table 1.14 for ADNI, RHVAE)."""

    section: ClassVar[str] = 'generator'

    input_shape: tuple[int, ...]
    model: str = "rhvae"
    latent_dim: int = 10
    network: str = "mlp"
    hidden: tuple[int, ...] = (500, 500, 400)
    channels: tuple[int, ...] = (16, 32, 64)
    likelihood: str = "bernoulli"
    gaussian_sigma: float = 0.1
    options: dict = field(default_factory=dict)   # the model's Options (medaug.generative.models.<model>)

    @classmethod
    def from_dict(cls, data: Mapping | None, where: str | None = None) -> GeneratorConfig:
        """As :meth:`Config.from_dict`; also reads the older flat spelling (model options beside the
        common fields, as every ``config.json`` saved before per-model options holds them)."""
        if isinstance(data, Mapping):
            data = _nest_model_options(dict(data), where or cls.section)
        return super().from_dict(data, where)

    def model_options(self) -> Config:
        """The validated ``Options`` of ``model``."""
        return MODELS.options(self.model, self.options, f"{self.section}.options ({self.model})")

    def validate(self) -> None:
        MODELS.get(self.model, f"{self.section}.model")
        if self.network not in NETWORKS:
            raise ConfigError(f"unknown network {self.network!r}; choose among {', '.join(NETWORKS)}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"unknown likelihood {self.likelihood!r}; choose among {', '.join(LIKELIHOODS)}")
        if len(self.input_shape) not in (3, 4):
            raise ConfigError(f"input_shape is (channels, X, Y[, Z]), got {self.input_shape}")
        if self.latent_dim < 1 or min(self.input_shape) < 1:
            raise ConfigError("latent_dim and every input_shape entry must be ≥ 1")
        if min(self.hidden, default=1) < 1 or min(self.channels, default=1) < 1:
            raise ConfigError("hidden and channels need layer sizes ≥ 1, "
                              f"got hidden {list(self.hidden)}, channels {list(self.channels)}")
        if self.gaussian_sigma <= 0:
            raise ConfigError(f"gaussian_sigma must be > 0, got {self.gaussian_sigma}")
        self.options = self.model_options().to_dict()  # complete: a saved config.json names every value


def _nest_model_options(data: dict, where: str) -> dict:
    """Read the older flat spelling: move the model's options given beside the common fields
    (``generator: {model: rhvae, temperature: 2}``) into ``options``, and drop another model's (older
    ``config.json`` files list every model's; one YAML may serve two models), with a warning for
    each value that is not its default."""
    model = data.get("model", GeneratorConfig.model)
    common = set(GeneratorConfig.option_names())
    flat = {key: data.pop(key) for key in list(data) if key not in common}
    if not flat or not isinstance(model, str) or model not in MODELS:
        data.update(flat)  # unknown keys or model: refused by name as usual
        return data
    defaults = {name: value for other in MODELS.names() for name, value in MODELS.get(other).Options().to_dict().items()}
    own = MODELS.get(model).Options.option_names()
    options = dict(data.get("options") or {})
    for key, value in flat.items():
        name = RENAMED.get(key, key)
        if name in own:
            options.setdefault(name, value)
            if value != defaults[name]:
                logger.warning("%s.%s: an older spelling, read as %s.options.%s; write it there", where, key, where,
                               name)
        elif name in defaults:
            if value != defaults[name]:
                logger.warning("%s.%s: not an option of the %s model; ignored", where, key, model)
        else:
            data[key] = value  # refused by name as usual
    if options:
        data["options"] = options
    return data
