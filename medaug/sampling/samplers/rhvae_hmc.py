"""Geometry-aware sampling from an RHVAE (thesis Eq. 1.8): HMC on p(z) ∝ 1_S(z) √det G⁻¹(z)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from medaug.compute import INFERENCE_BATCH
from medaug.errors import ConfigError
from medaug.generative.metric import Metric, StackedMetrics
from medaug.generative.models.rhvae import RHVAE
from medaug.sampling.diagnostics import chain_diagnostics
from medaug.sampling.posterior_metric import max_min_spacing
from medaug.sampling.hmc import check_compiler, hmc
from medaug.sampling.sampler import TRACED_CHAINS, ChainOptions, Sampler, check_step, random_starts
from medaug.sampling.samplers import SAMPLERS


def check_scale(options) -> None:
    """A numeric ``temperature`` must be > 0 (the names are checked by type)."""
    if not isinstance(options.temperature, str) and options.temperature <= 0:
        raise ConfigError(f"{options.section}: temperature must be 'auto', 'model' or a number > 0, "
                          f"got {options.temperature!r}")


@dataclass
class RHVAEHMCOptions(ChainOptions):
    """Thesis: 300 steps, l = 15, γ ∈ [0.01, 0.05]; ``warmup: 0`` keeps the fixed ``step_size``."""

    section: ClassVar[str] = "rhvae-hmc sampler options"

    steps: int = 300
    leapfrog_steps: int = 15
    step_size: float = 0.03
    temperature: float | Literal["auto", "model"] = "auto"
    support: Literal["auto", "thesis"] = "auto"
    step_jitter: float = 0.2
    compile: bool = False   # the trajectory and acceptance through torch.compile (eager results up to float rounding)
    classes_together: bool = False  # studies only: every class's chains in one batch (other draws than apart)

    def validate(self) -> None:
        super().validate()
        check_step(self)
        check_scale(self)
        if self.compile:
            check_compiler()  # before any generator is trained, not when the chains start


def sampling_temperature(option, centroids: torch.Tensor, trained: float) -> float:
    """T of the sampled metric: the trained T (``model``), ρ = maxᵢ minⱼ ‖cᵢ − cⱼ‖ (``auto``) or a number."""
    if option == "model":
        return float(trained)
    if option == "auto":
        spacing = max_min_spacing(centroids)
        return spacing if spacing else float(trained)
    return float(option)


@SAMPLERS.register
class RHVAEHMCSampler(Sampler):
    """Geometry-aware HMC on the RHVAE metric volume √det G⁻¹(z) (thesis Eq. 1.8).

    Near its centroids √det G⁻¹ ≈ Πᵢ-weighted bumps exp(−d‖z − cᵢ‖²/(2T²)): a kernel density of the
    training codes of width T/√d per dimension, over a floor λ^(d/2). The thesis fixes T (1.5) for the
    training metric; sampled with that T, a class whose codes lie 0.1 apart is one blob wider than S,
    and one whose codes lie 5 apart is a set of isolated bumps whose samples copy the training images.
    ``temperature: auto`` (default) therefore samples with T = ρ = maxᵢ minⱼ ‖cᵢ − cⱼ‖ (the rule of
    thesis Alg. 4), so every bump reaches its nearest neighbours whatever the scale of the codes;
    ``model`` keeps the trained T, a number sets it. ``support: auto`` is the ball around the codes'
    mean of radius maxᵢ ‖cᵢ − c̄‖ + 2T; ``thesis`` is {‖z‖ ≤ 2 maxᵢ ‖cᵢ‖}.

    Chains start at training centroids (drawn uniformly), adapt their step size during ``warmup``
    transitions by dual averaging toward ``target_acceptance`` (one step per class, or per chain),
    discard them, then run ``steps`` transitions of ``leapfrog_steps`` leapfrog steps, each step
    scaled by a factor uniform in [1 − ``step_jitter``, 1 + ``step_jitter``]
    (:func:`~medaug.sampling.hmc.hmc`).

    ``classes_together``: a study draws every class's chains in one batch (:meth:`draw_together`),
    one set of kernels per leapfrog step for all classes (for GPUs, where the chains of one class
    leave most of the device idle); each class keeps its seed's random stream and its own step.
    """

    name = "rhvae-hmc"
    Options = RHVAEHMCOptions
    models = ("rhvae",)
    draws_classes_together = True

    def _fit(self, train_data):
        if not isinstance(self.model, RHVAE):
            raise ConfigError(f"the {self.name} sampler needs an RHVAE")
        if len(self.model.centroids) == 0:
            if train_data is None:
                raise ConfigError("the RHVAE has no stored metric: pass its training data to fit()")
            self.model.update_metric(train_data.split(INFERENCE_BATCH))
        centroids = self.centroids = self.model.centroids
        self.temperature = sampling_temperature(self.options.temperature, centroids, self.model.options.temperature)
        # Eq. 1.7 with the trained centroids and factors, at the sampling temperature
        self.metric = Metric(centroids, self.model.factors, self.temperature, self.model.options.regularization)
        if self.options.support == "thesis":
            self.centre = torch.zeros_like(centroids[0])
            self.radius = 2.0 * float(centroids.norm(dim=1).max())
        else:
            self.centre = centroids.mean(0)
            self.radius = float((centroids - self.centre).norm(dim=1).max()) + 2.0 * self.temperature

    def inside(self, z: torch.Tensor) -> torch.Tensor:
        """Membership of the support S, (B,)."""
        return (z - self.centre).norm(dim=1) <= self.radius

    def log_density(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """½ log det G⁻¹(z) and its gradient, (B,) and (B, d) (ignores the support)."""
        return self.metric.log_volume_and_gradient(z)

    def metric_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) = (G⁻¹(z))⁻¹ of Eq. 1.7 at the sampling temperature, (B, d, d)."""
        return self.metric.tensor(z)

    def log_target(self, z: torch.Tensor) -> torch.Tensor:
        """log of the unnormalised target √det G⁻¹(z) (−inf outside the support)."""
        value = self.log_density(z)[0]
        return torch.where(self.inside(z), value, torch.full_like(value, float("-inf")))

    def _scale(self) -> dict:
        return {"support_radius": self.radius, "sampling_temperature": self.temperature}

    def _chains(self, log_density, start, generator, inside):
        options = self.options
        return hmc(log_density, start, steps=options.steps, leapfrog_steps=options.leapfrog_steps,
                   step_size=options.step_size, generator=generator, inside=inside, trace_chains=TRACED_CHAINS,
                   warmup=options.warmup, target_acceptance=options.target_acceptance, per_chain=options.per_chain,
                   step_jitter=options.step_jitter, compile=options.compile)

    def _latents(self, n, generator):
        result = self._chains(self.log_density, random_starts(self.centroids, n, generator), generator, self.inside)
        return result.samples, {**self._scale(), **chain_diagnostics(result, self.centroids)}

    @classmethod
    @torch.no_grad()
    def draw_together(cls, samplers: list[RHVAEHMCSampler], n: int, *, seeds: list[int]) -> list[tuple[torch.Tensor, dict]]:
        """What ``[s.draw(n, seed=seed) for s, seed in zip(samplers, seeds)]`` returns, up to float rounding,
        from one batch of K × n chains on the K fitted samplers' stacked metrics (same options and device)."""
        if any(s.options != samplers[0].options or s.device != samplers[0].device for s in samplers):
            raise ConfigError(f"{cls.name}: draw_together needs samplers with the same options on one device")
        for sampler in samplers:
            sampler.check_ready(n)
        generators = [torch.Generator(device=s.device).manual_seed(seed) for s, seed in zip(samplers, seeds)]
        start = torch.stack([random_starts(s.centroids, n, g) for s, g in zip(samplers, generators)])
        centre = torch.stack([s.centre for s in samplers])[:, None]
        radius = torch.tensor([s.radius for s in samplers], dtype=start.dtype, device=start.device)[:, None]
        metrics = StackedMetrics([s.metric for s in samplers])
        result = samplers[0]._chains(metrics.log_volume_and_gradient, start, generators,
                                     lambda z: (z - centre).norm(dim=-1) <= radius)
        return [(result.samples[k], sampler.logged({**sampler._scale(),
                                                    **chain_diagnostics(result.group(k), sampler.centroids)}))
                for k, sampler in enumerate(samplers)]
