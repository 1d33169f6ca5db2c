"""Geometric VAE sampling (thesis ch. 3, Alg. 4-5): HMC on √det G(z) of Eq. 3.6."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from medaug.errors import ConfigError
from medaug.sampling.diagnostics import chain_diagnostics
from medaug.sampling.posterior_metric import build_geometric_metric
from medaug.sampling.hmc import hmc
from medaug.sampling.sampler import TRACED_CHAINS, ChainOptions, Sampler, check_step, posterior_parameters, random_starts
from medaug.sampling.samplers import SAMPLERS


@dataclass
class GeometricOptions(ChainOptions):
    """Thesis: 100 steps, 10 leapfrog steps, ε = 0.01; centroids: k-medoids of the codes (None: all)."""

    section: ClassVar[str] = "geometric sampler options"

    steps: int = 100
    leapfrog_steps: int = 10
    step_size: float = 0.01
    n_centroids: int | None = None
    regularization: float = 1e-3
    tau: float = 0.0
    step_jitter: float = 0.2

    def validate(self) -> None:
        super().validate()
        check_step(self)
        if self.regularization <= 0 or self.tau < 0 or (self.n_centroids is not None and self.n_centroids < 1):
            raise ConfigError(f"{self.section}: regularization must be > 0, tau ≥ 0 and n_centroids ≥ 1")


@SAMPLERS.register
class GeometricSampler(Sampler):
    """Geometric VAE: HMC on the volume of a metric built from any Gaussian encoder's posteriors (ch. 3).

    The step size is adapted during ``warmup`` as for ``rhvae-hmc``."""

    name = "geometric"
    Options = GeometricOptions

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the geometric sampler needs the training data to build its metric")
        means, log_vars = posterior_parameters(self.model, train_data)
        self.metric = build_geometric_metric(means, log_vars, self.options.n_centroids,
                                             self.options.regularization, self.options.tau)

    def metric_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) of Eq. 3.6, (B, d, d)."""
        return torch.diag_embed(self.metric.diagonal(z))

    def log_target(self, z: torch.Tensor) -> torch.Tensor:
        """log of the unnormalised Riemannian uniform density √det G(z)."""
        return self.metric.log_density_and_gradient(z)[0]

    def _latents(self, n, generator):
        options = self.options
        result = hmc(self.metric.log_density_and_gradient, random_starts(self.metric.centroids, n, generator),
                     steps=options.steps, leapfrog_steps=options.leapfrog_steps, step_size=options.step_size,
                     generator=generator, trace_chains=TRACED_CHAINS, warmup=options.warmup,
                     target_acceptance=options.target_acceptance, per_chain=options.per_chain,
                     step_jitter=options.step_jitter)
        return result.samples, {"rho": self.metric.rho, **chain_diagnostics(result, self.metric.centroids)}
