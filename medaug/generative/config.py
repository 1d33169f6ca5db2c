"""Configuration of a generative model; round-trips through JSON / YAML (``to_dict`` / ``from_dict``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from medaug.configuration import Config
from medaug.errors import ConfigError
from medaug.registry import Registry

MODELS = Registry("model", "medaug.generative.models")  # the classes of medaug.generative.models
NETWORKS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass
class GeneratorConfig(Config):
    """Model, networks and hyper-parameters (defaults: thesis Table 1.14 for ADNI, RHVAE)."""

    section: ClassVar[str] = 'generator'

    input_shape: tuple[int, ...]
    model: str = "rhvae"
    latent_dim: int = 10
    network: str = "mlp"
    hidden: tuple[int, ...] = (500, 500, 400)
    channels: tuple[int, ...] = (16, 32, 64)
    likelihood: str = "bernoulli"
    gaussian_sigma: float = 0.1
    # RHVAE (Eq. 1.5-1.7)
    leapfrog_steps: int = 3
    step_size: float = 1e-3
    temperature: float = 1.5
    regularization: float = 1e-2
    sqrt_beta_zero: float = 0.3
    fixed_point_iterations: int = 3
    # False: ∇U inside the leapfrog is a constant for the parameter gradient (a first-order
    # approximation; the ELBO value is unchanged; pythae differentiates its last half-step only).
    # True: exact gradient of Eq. 1.6 through the decoder gradients (double backward, about twice the cost).
    second_order: bool = False
    metric_hidden: int = 400
    # VAMP prior and RAE
    pseudo_inputs: int = 50
    rae_latent_weight: float = 1e-2
    rae_decoder_weight: float = 1e-4

    def validate(self) -> None:
        MODELS.get(self.model, f"{self.section}.model")
        if self.network not in NETWORKS:
            raise ConfigError(f"unknown network {self.network!r}; choose among {', '.join(NETWORKS)}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"unknown likelihood {self.likelihood!r}; choose among {', '.join(LIKELIHOODS)}")
        if len(self.input_shape) not in (3, 4):
            raise ConfigError(f"input_shape is (channels, X, Y[, Z]), got {self.input_shape}")
        if self.latent_dim < 1 or self.leapfrog_steps < 1 or self.fixed_point_iterations < 1:
            raise ConfigError("latent_dim, leapfrog_steps and fixed_point_iterations must be ≥ 1")
        if min(self.hidden, default=1) < 1 or min(self.channels, default=1) < 1 or self.metric_hidden < 1:
            raise ConfigError("hidden, channels and metric_hidden need layer sizes ≥ 1, "
                              f"got hidden {list(self.hidden)}, channels {list(self.channels)}")
        if self.pseudo_inputs < 1 or min(self.input_shape) < 1:
            raise ConfigError("pseudo_inputs and every input_shape entry must be ≥ 1")
        if min(self.rae_latent_weight, self.rae_decoder_weight) < 0:
            raise ConfigError("rae_latent_weight and rae_decoder_weight must be ≥ 0")
        if not 0.0 < self.sqrt_beta_zero <= 1.0:
            raise ConfigError(f"sqrt_beta_zero must be in (0, 1], got {self.sqrt_beta_zero}")
        if min(self.step_size, self.temperature, self.regularization, self.gaussian_sigma) <= 0:
            raise ConfigError("step_size, temperature, regularization and gaussian_sigma must be > 0")


