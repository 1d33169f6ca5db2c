"""Riemannian random walk (thesis Alg. 3) on the RHVAE metric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from medaug.errors import ConfigError
from medaug.sampling.diagnostics import chain_diagnostics
from medaug.sampling.geodesics import riemannian_random_walk
from medaug.sampling.sampler import TRACED_CHAINS, ChainOptions, random_starts
from medaug.sampling.samplers import SAMPLERS
from medaug.sampling.samplers.rhvae_hmc import RHVAEHMCSampler, check_scale


@dataclass
class RandomWalkOptions(ChainOptions):
    section: ClassVar[str] = "random-walk sampler options"

    steps: int = 1000   # a diffusive walk: about 100-300 steps per independent draw on digits
    warmup: int = 300   # 50 left dual averaging unconverged (σ 0.015-0.08, acceptance 0.8 for a 0.5 target)
    target_acceptance: float = 0.5
    sigma: float = 0.5
    shooting_steps: int = 10
    temperature: float | Literal["auto", "model"] = "auto"
    support: Literal["auto", "thesis"] = "auto"

    def validate(self) -> None:
        super().validate()
        if self.sigma <= 0 or self.shooting_steps < 1:
            raise ConfigError(f"{self.section}: shooting_steps must be ≥ 1 and sigma > 0")
        check_scale(self)


@SAMPLERS.register
class RandomWalkSampler(RHVAEHMCSampler):
    """Riemannian random walk (thesis Alg. 3) on the RHVAE metric, chains started at centroids.

    The proposal scale σ is adapted during ``warmup`` by dual averaging toward
    ``target_acceptance`` (``warmup: 0`` keeps the fixed σ). Temperature and support as for
    ``rhvae-hmc``."""

    name = "random-walk"
    Options = RandomWalkOptions

    def _latents(self, n, generator):
        options = self.options
        result = riemannian_random_walk(self.metric, random_starts(self.centroids, n, generator),
                                        steps=options.steps, sigma=options.sigma, inside=self.inside,
                                        generator=generator, shooting_steps=options.shooting_steps,
                                        warmup=options.warmup, target_acceptance=options.target_acceptance,
                                        per_chain=options.per_chain, trace_chains=TRACED_CHAINS)
        diagnostics = chain_diagnostics(result, self.centroids)
        diagnostics["sigma"] = diagnostics.pop("step_size")
        return result.samples, {**self._scale(), **diagnostics}
