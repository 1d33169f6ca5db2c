"""The sampler API: ``fit(model, train_data)`` then ``sample(n, seed=..., batch_size=...)``.

Samplers draw latent codes for all requested images as batched chains, then decode final states
only. Each sampler's options are a :class:`~medaug.configuration.Config` dataclass (its
``Options``), saved with every synthetic image (``config()``). Concrete samplers live in
:mod:`medaug.sampling.samplers`, one module each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from medaug.compute import INFERENCE_BATCH
from medaug.configuration import Config
from medaug.errors import ConfigError, UninformativeGeneratorError
from medaug.generative.models import GenerativeModel
from medaug.registry import NoOptions
from medaug.sampling.posterior_check import posterior_informativeness, require_informative

logger = logging.getLogger(__name__)

TRACED_CHAINS = 16  # chains whose whole path is kept for the effective sample size and split-R̂


@dataclass
class Samples:
    """Decoded images (n, C, *spatial) in [0, 1], their latent codes (n, d) and diagnostics."""

    images: torch.Tensor
    latents: torch.Tensor
    diagnostics: dict = field(default_factory=dict)


class Sampler:
    """Base class: subclasses set ``name`` and ``Options`` and implement ``_fit`` and ``_latents``."""

    name: ClassVar[str] = "base"
    Options: ClassVar[type[Config]] = NoOptions
    draws_classes_together: ClassVar[bool] = False  # a ``draw_together`` classmethod, used when the options ask
    checks_posterior: ClassVar[bool] = True  # refuse a collapsed generator (:mod:`medaug.sampling.posterior_check`)
    models: ClassVar[tuple[str, ...] | None] = None  # the generator models it samples from (None: any)

    def __init__(self, options: Config | None = None) -> None:
        self.options = options if options is not None else self.Options()
        if not isinstance(self.options, self.Options):
            raise ConfigError(f"the {self.name} sampler takes {self.Options.__name__}, got {type(options).__name__}")
        self.model: GenerativeModel | None = None
        self.posterior: dict = {}

    @classmethod
    def generator_problem(cls, config) -> str | None:
        """Why a generator of this configuration (a :class:`~medaug.generative.config.GeneratorConfig`
        whose model is in :attr:`models`) cannot be sampled, or None; checked when a study is read."""
        return None

    def fit(self, model: GenerativeModel, train_data: torch.Tensor | None = None, *,
            allow_uninformative: bool = False) -> Sampler:
        """Fit on the generator's training images. With them, a collapsed posterior is refused first
        (:class:`~medaug.errors.UninformativeGeneratorError`), or only logged with ``allow_uninformative``
        (for smoke tests on untrained networks)."""
        self.model = model.eval()
        if train_data is not None and self.checks_posterior:
            self.posterior = posterior_informativeness(model, train_data)
            try:
                require_informative(self.posterior, self.name)
            except UninformativeGeneratorError as error:
                if not allow_uninformative:
                    raise
                logger.warning("%s (allowed)", error)
        self._fit(train_data)
        return self

    def _fit(self, train_data: torch.Tensor | None) -> None:
        pass

    def config(self) -> dict:
        """The sampler's name and options, JSON-ready (written with every synthetic image)."""
        return {"sampler": self.name, **self.options.to_dict()}

    @property
    def device(self) -> torch.device:
        """Chains and decoding run where the model is (``model.to("cuda")`` moves them to the GPU)."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def draw(self, n: int, *, seed: int) -> tuple[torch.Tensor, dict]:
        """Latent codes (n, d) on the model's device, as one batch of chains, and diagnostics.

        The random stream lives on that device: a seed gives the same codes on every run of one
        device type, not the same codes on CPU and GPU."""
        self.check_ready(n)
        latents, diagnostics = self._latents(n, torch.Generator(device=self.device).manual_seed(seed))
        return latents, self.logged(diagnostics)

    def check_ready(self, n: int) -> None:
        """Refuse drawing before :meth:`fit` or fewer than one sample."""
        if self.model is None:
            raise ConfigError(f"{self.name} sampler: call fit(model, train_data) before sample()")
        if n < 1:
            raise ConfigError(f"number of samples must be ≥ 1, got {n}")

    def logged(self, diagnostics: dict) -> dict:
        """``diagnostics``, its warnings logged."""
        for warning in diagnostics.get("warnings", []):
            logger.warning("%s sampler: %s", self.name, warning)
        return diagnostics

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> Iterator[torch.Tensor]:
        """Decoded images, ``batch_size`` at a time, as float32 CPU tensors (B, C, *spatial)."""
        for part in latents.split(batch_size):
            yield self.model.decode(part.to(self.device)).float().cpu()

    def sample(self, n: int, *, seed: int, batch_size: int = INFERENCE_BATCH) -> Samples:
        """``n`` images in memory; :meth:`draw` then :meth:`decode` stream them instead."""
        latents, diagnostics = self.draw(n, seed=seed)
        return Samples(torch.cat(list(self.decode(latents, batch_size))), latents.cpu(), diagnostics)

    def _latents(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


@dataclass
class ChainOptions(Config):
    """Options shared by the MCMC samplers: ``steps`` transitions after ``warmup`` adaptation
    transitions (discarded) toward ``target_acceptance``, one adapted step per class or
    ``per_chain``."""

    steps: int = 100
    warmup: int = 100
    target_acceptance: float = 0.75
    per_chain: bool = False

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"{self.section}: steps must be ≥ 1, got {self.steps}")
        if self.warmup < 0 or not 0.0 < self.target_acceptance < 1.0:
            raise ConfigError(f"{self.section}: warmup must be ≥ 0 and target_acceptance in (0, 1), "
                              f"got {self.warmup} and {self.target_acceptance}")


def check_step(options: Config) -> None:
    """HMC step options: leapfrog_steps ≥ 1, step_size > 0, step_jitter in [0, 1)."""
    if options.leapfrog_steps < 1 or options.step_size <= 0:
        raise ConfigError(f"{options.section}: leapfrog_steps must be ≥ 1 and step_size > 0")
    if not 0.0 <= options.step_jitter < 1.0:
        raise ConfigError(f"{options.section}: step_jitter must be in [0, 1), got {options.step_jitter}")


def posterior_parameters(model: GenerativeModel, data: torch.Tensor,
                         batch_size: int = INFERENCE_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder means and log-variances of ``data`` (n, d) each, ``batch_size`` images at a time on
    the model's device."""
    device = next(model.parameters()).device
    with torch.no_grad():
        parts = [model.encoder(part.to(device)) for part in data.split(batch_size)]
    return torch.cat([mean for mean, _ in parts]), torch.cat([log_var for _, log_var in parts])


def posterior_means(model: GenerativeModel, data: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """Encoder means of ``data`` (n, d) (:func:`posterior_parameters`)."""
    return posterior_parameters(model, data, batch_size)[0]


def random_starts(points: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` chain starts drawn uniformly among ``points``."""
    return points[torch.randint(len(points), (n,), generator=generator, device=generator.device)]
