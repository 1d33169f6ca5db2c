"""One sampler API: ``fit(model, train_data)`` then ``sample(n, seed=..., batch_size=...)``.

Samplers draw latent codes for all requested images as batched chains, then decode final states
only. Each sampler's configuration is a dataclass saved next to the generator (``to_dict``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from medaug.errors import ConfigError, UninformativeGeneratorError
from medaug.generative.models import RHVAE, VAMP, GenerativeModel
from medaug.generative.leapfrog import Metric
from medaug.sampling.diagnostics import chain_diagnostics
from medaug.generative.metric import inverse_metric
from medaug.sampling.geodesics import curve_length, riemannian_random_walk, shortest_path
from medaug.sampling.geometric import build_geometric_metric, max_min_spacing
from medaug.sampling.hmc import hmc
from medaug.sampling.posterior_check import posterior_informativeness, require_informative
from medaug.sampling.two_stage import fit_code_vae, sample_codes
from medaug.sampling.volume import log_volume_and_gradient

logger = logging.getLogger(__name__)


@dataclass
class Samples:
    """Decoded images (n, C, *spatial) in [0, 1], their latent codes (n, d) and diagnostics."""

    images: torch.Tensor
    latents: torch.Tensor
    diagnostics: dict = field(default_factory=dict)


class Sampler:
    """Base class: subclasses implement ``_fit`` and ``_latents``."""

    name = "base"
    checks_posterior = True  # refuse a collapsed generator (:mod:`medaug.sampling.posterior_check`)

    def __init__(self, **options) -> None:
        self.options = options
        self.model: GenerativeModel | None = None
        self.posterior: dict = {}

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
        return {"sampler": self.name, **self.options}

    @property
    def device(self) -> torch.device:
        """Chains and decoding run where the model is (``model.to("cuda")`` moves them to the GPU)."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def draw(self, n: int, *, seed: int) -> tuple[torch.Tensor, dict]:
        """Latent codes (n, d) on the model's device, as one batch of chains, and diagnostics.

        The random stream lives on that device: a seed gives the same codes on every run of one
        device type, not the same codes on CPU and GPU."""
        if self.model is None:
            raise ConfigError(f"{self.name} sampler: call fit(model, train_data) before sample()")
        if n < 1:
            raise ConfigError(f"number of samples must be ≥ 1, got {n}")
        latents, diagnostics = self._latents(n, torch.Generator(device=self.device).manual_seed(seed))
        for warning in diagnostics.get("warnings", []):
            logger.warning("%s sampler: %s", self.name, warning)
        return latents, diagnostics

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = 64) -> Iterator[torch.Tensor]:
        """Decoded images, ``batch_size`` at a time, as float32 CPU tensors (B, C, *spatial)."""
        for part in latents.split(batch_size):
            yield self.model.decode(part.to(self.device)).float().cpu()

    def sample(self, n: int, *, seed: int, batch_size: int = 64) -> Samples:
        """``n`` images in memory; :meth:`draw` then :meth:`decode` stream them instead."""
        latents, diagnostics = self.draw(n, seed=seed)
        return Samples(torch.cat(list(self.decode(latents, batch_size))), latents.cpu(), diagnostics)

    def _latents(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


TRACED_CHAINS = 16  # chains whose whole path is kept for the effective sample size and split-R̂


def posterior_parameters(model: GenerativeModel, data: torch.Tensor,
                         batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder means and log-variances of ``data`` (n, d) each, ``batch_size`` images at a time on
    the model's device."""
    device = next(model.parameters()).device
    with torch.no_grad():
        parts = [model.encoder(part.to(device)) for part in data.split(batch_size)]
    return torch.cat([mean for mean, _ in parts]), torch.cat([log_var for _, log_var in parts])


def posterior_means(model: GenerativeModel, data: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Encoder means of ``data`` (n, d) (:func:`posterior_parameters`)."""
    return posterior_parameters(model, data, batch_size)[0]


class PriorSampler(Sampler):
    """z ~ N(0, I)."""

    name = "prior"

    def __init__(self) -> None:  # no options: an unknown key is a TypeError, not a silent extra
        super().__init__()

    def _latents(self, n, generator):
        return torch.randn(n, self.model.config.latent_dim, generator=generator, device=generator.device), {}


class VAMPSampler(Sampler):
    """z ~ 1/K Σₖ q_φ(z|uₖ): a pseudo-input drawn uniformly, then its posterior."""

    name = "vamp"

    def __init__(self) -> None:  # no options: an unknown key is a TypeError, not a silent extra
        super().__init__()

    def _fit(self, train_data):
        if not isinstance(self.model, VAMP):
            raise ConfigError("the vamp sampler needs a model trained with model: vamp")

    def _latents(self, n, generator):
        mean, log_var = self.model.encoder(torch.sigmoid(self.model.pseudo_inputs))
        pick = torch.randint(len(mean), (n,), generator=generator, device=generator.device)
        noise = torch.randn(n, mean.shape[1], generator=generator, device=generator.device)
        return mean[pick] + (0.5 * log_var[pick]).exp() * noise, {}


class GMMSampler(Sampler):
    """Ex-post density estimation: a Gaussian mixture (scikit-learn) on the training posterior means."""

    name = "gmm"

    def __init__(self, n_components: int = 10) -> None:
        if n_components < 1:
            raise ConfigError(f"the gmm sampler needs n_components ≥ 1, got {n_components}")
        super().__init__(n_components=n_components)

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the gmm sampler needs the training data to fit its mixture")
        self._fit_mixture(posterior_means(self.model, train_data))

    def fit_codes(self, model: GenerativeModel, codes: torch.Tensor) -> GMMSampler:
        """Fit on latent codes (n, d) computed beforehand (e.g. saved with a longitudinal model)."""
        self.model = model.eval()
        self._fit_mixture(torch.as_tensor(codes))
        return self

    def _fit_mixture(self, codes: torch.Tensor) -> None:
        from sklearn.mixture import GaussianMixture

        codes = codes.cpu().numpy().astype(np.float64)
        if len(codes) < 2:
            raise ConfigError(f"the gmm sampler needs at least 2 latent codes to fit its mixture, got {len(codes)}")
        components = min(self.options["n_components"], len(codes))
        self.mixture = GaussianMixture(components, covariance_type="full", random_state=0).fit(codes)

    def _latents(self, n, generator):
        self.mixture.random_state = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
        codes, _ = self.mixture.sample(n)
        order = torch.randperm(n, generator=generator, device=generator.device)  # sklearn returns samples grouped by component
        return torch.as_tensor(codes, dtype=torch.float32, device=generator.device)[order], {}


class TwoStageSampler(Sampler):
    """Two-stage VAE: a second VAE on the training posterior means (:mod:`medaug.sampling.two_stage`)."""

    name = "two-stage"

    def __init__(self, latent_dim: int | None = None, epochs: int = 300, seed: int = 0) -> None:
        if epochs < 1 or (latent_dim is not None and latent_dim < 1):
            raise ConfigError("epochs and latent_dim must be ≥ 1")
        super().__init__(latent_dim=latent_dim, epochs=epochs, seed=seed)

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the two-stage sampler needs the training data to fit its second VAE")
        codes = posterior_means(self.model, train_data)
        latent_dim = self.options["latent_dim"] or codes.shape[1]
        self.second, self.centre, self.scale = fit_code_vae(codes, latent_dim, self.options["epochs"],
                                                            self.options["seed"])

    def _latents(self, n, generator):
        return sample_codes(self.second, self.centre, self.scale, n, generator), {}


def _check_adaptation(warmup: int, target_acceptance: float, step_jitter: float = 0.0) -> None:
    if warmup < 0 or not 0.0 < target_acceptance < 1.0:
        raise ConfigError(f"warmup must be ≥ 0 and target_acceptance in (0, 1), got {warmup} and {target_acceptance}")
    if not 0.0 <= step_jitter < 1.0:
        raise ConfigError(f"step_jitter must be in [0, 1), got {step_jitter}")


def _random_starts(points: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    return points[torch.randint(len(points), (n,), generator=generator, device=generator.device)]


class RHVAEHMCSampler(Sampler):
    """Geometry-aware sampling (Eq. 1.8): HMC on p(z) ∝ 1_S(z) √det G⁻¹(z).

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
    discard them, then run ``steps`` transitions of ``leapfrog_steps`` leapfrog steps (thesis: 300
    steps, l = 15, γ ∈ [0.01, 0.05]; ``warmup: 0`` keeps the fixed ``step_size``), each step scaled by
    a factor uniform in [1 − ``step_jitter``, 1 + ``step_jitter``] (:func:`~medaug.sampling.hmc.hmc`).
    """

    name = "rhvae-hmc"

    def __init__(self, steps: int = 300, leapfrog_steps: int = 15, step_size: float = 0.03, warmup: int = 100,
                 target_acceptance: float = 0.75, per_chain: bool = False, temperature: float | str = "auto",
                 support: str = "auto", step_jitter: float = 0.2) -> None:
        if steps < 1 or leapfrog_steps < 1 or step_size <= 0:
            raise ConfigError("steps and leapfrog_steps must be ≥ 1 and step_size > 0")
        _check_adaptation(warmup, target_acceptance, step_jitter)
        _check_scale(temperature, support)
        super().__init__(steps=steps, leapfrog_steps=leapfrog_steps, step_size=step_size, warmup=warmup,
                         target_acceptance=target_acceptance, per_chain=per_chain, temperature=temperature,
                         support=support, step_jitter=step_jitter)

    def _fit(self, train_data):
        if not isinstance(self.model, RHVAE):
            raise ConfigError(f"the {self.name} sampler needs an RHVAE")
        if len(self.model.centroids) == 0:
            if train_data is None:
                raise ConfigError("the RHVAE has no stored metric: pass its training data to fit()")
            self.model.update_metric(train_data.split(64))
        centroids = self.model.centroids
        self.centroids, self.outer = centroids, self.model.factors @ self.model.factors.transpose(-1, -2)
        self.temperature = _sampling_temperature(self.options["temperature"], centroids, self.model.config.temperature)
        if self.options["support"] == "thesis":
            self.centre = torch.zeros_like(centroids[0])
            self.radius = 2.0 * float(centroids.norm(dim=1).max())
        else:
            self.centre = centroids.mean(0)
            self.radius = float((centroids - self.centre).norm(dim=1).max()) + 2.0 * self.temperature

    def inside(self, z: torch.Tensor) -> torch.Tensor:
        """Membership of the support S, (B,)."""
        return (z - self.centre).norm(dim=1) <= self.radius

    def log_density(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return log_volume_and_gradient(z, self.centroids, self.outer, self.temperature,
                                       self.model.config.regularization)

    def metric_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) = (G⁻¹(z))⁻¹ of Eq. 1.7 at the sampling temperature, (B, d, d)."""
        inverse = inverse_metric(z, self.centroids, self.model.factors, self.temperature,
                                 self.model.config.regularization, self.outer)
        return torch.cholesky_inverse(torch.linalg.cholesky(inverse))

    def log_target(self, z: torch.Tensor) -> torch.Tensor:
        """log of the unnormalised target √det G⁻¹(z) (−inf outside the support)."""
        value = self.log_density(z)[0]
        return torch.where(self.inside(z), value, torch.full_like(value, float("-inf")))

    def _scale(self) -> dict:
        return {"support_radius": self.radius, "sampling_temperature": self.temperature}

    def _latents(self, n, generator):
        options = self.options
        result = hmc(self.log_density, _random_starts(self.centroids, n, generator), steps=options["steps"],
                     leapfrog_steps=options["leapfrog_steps"], step_size=options["step_size"], generator=generator,
                     inside=self.inside, trace_chains=TRACED_CHAINS, warmup=options["warmup"],
                     target_acceptance=options["target_acceptance"], per_chain=options["per_chain"],
                     step_jitter=options["step_jitter"])
        return result.samples, {**self._scale(), **chain_diagnostics(result, self.centroids)}


def _check_scale(temperature, support) -> None:
    if isinstance(temperature, str) and temperature not in ("auto", "model"):
        raise ConfigError(f"temperature must be 'auto', 'model' or a number > 0, got {temperature!r}")
    if not isinstance(temperature, str) and not temperature > 0:
        raise ConfigError(f"temperature must be 'auto', 'model' or a number > 0, got {temperature!r}")
    if support not in ("auto", "thesis"):
        raise ConfigError(f"support must be 'auto' or 'thesis', got {support!r}")


def _sampling_temperature(option, centroids: torch.Tensor, trained: float) -> float:
    if option == "model":
        return float(trained)
    if option == "auto":
        spacing = max_min_spacing(centroids)
        return spacing if spacing else float(trained)
    return float(option)


class RandomWalkSampler(RHVAEHMCSampler):
    """Riemannian random walk (thesis Alg. 3) on the RHVAE metric, chains started at centroids; the
    proposal scale σ is adapted during ``warmup`` by dual averaging toward ``target_acceptance``
    (``warmup: 0`` keeps the fixed σ). Temperature and support as for ``rhvae-hmc``."""

    name = "random-walk"

    def __init__(self, steps: int = 100, sigma: float = 0.5, shooting_steps: int = 10, warmup: int = 50,
                 target_acceptance: float = 0.5, per_chain: bool = False, temperature: float | str = "auto",
                 support: str = "auto") -> None:
        if steps < 1 or sigma <= 0 or shooting_steps < 1:
            raise ConfigError("steps and shooting_steps must be ≥ 1 and sigma > 0")
        _check_adaptation(warmup, target_acceptance)
        _check_scale(temperature, support)
        Sampler.__init__(self, steps=steps, sigma=sigma, shooting_steps=shooting_steps, warmup=warmup,
                         target_acceptance=target_acceptance, per_chain=per_chain, temperature=temperature,
                         support=support)

    def _latents(self, n, generator):
        options = self.options
        metric = Metric(self.centroids, self.model.factors, self.temperature, self.model.config.regularization)
        result = riemannian_random_walk(metric, _random_starts(self.centroids, n, generator), steps=options["steps"],
                                        sigma=options["sigma"], inside=self.inside, generator=generator,
                                        shooting_steps=options["shooting_steps"], warmup=options["warmup"],
                                        target_acceptance=options["target_acceptance"],
                                        per_chain=options["per_chain"], trace_chains=TRACED_CHAINS)
        diagnostics = chain_diagnostics(result, self.centroids)
        diagnostics["sigma"] = diagnostics.pop("step_size")
        return result.samples, {**self._scale(), **diagnostics}


class GeometricSampler(Sampler):
    """Geometric VAE sampling (thesis ch. 3, Alg. 4-5) from any model with a Gaussian encoder:
    HMC on √det G(z) of Eq. 3.6 (thesis: 100 steps, 10 leapfrog steps, ε = 0.01), with the step
    size adapted during ``warmup`` as for ``rhvae-hmc``."""

    name = "geometric"

    def __init__(self, steps: int = 100, leapfrog_steps: int = 10, step_size: float = 0.01,
                 n_centroids: int | None = None, regularization: float = 1e-3, tau: float = 0.0, warmup: int = 100,
                 target_acceptance: float = 0.75, per_chain: bool = False, step_jitter: float = 0.2) -> None:
        if steps < 1 or leapfrog_steps < 1 or step_size <= 0 or regularization <= 0 or tau < 0:
            raise ConfigError("steps, leapfrog_steps ≥ 1; step_size, regularization > 0; tau ≥ 0")
        _check_adaptation(warmup, target_acceptance, step_jitter)
        super().__init__(steps=steps, leapfrog_steps=leapfrog_steps, step_size=step_size, n_centroids=n_centroids,
                         regularization=regularization, tau=tau, warmup=warmup,
                         target_acceptance=target_acceptance, per_chain=per_chain, step_jitter=step_jitter)

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the geometric sampler needs the training data to build its metric")
        means, log_vars = posterior_parameters(self.model, train_data)
        self.metric = build_geometric_metric(means, log_vars, self.options["n_centroids"],
                                             self.options["regularization"], self.options["tau"])

    def metric_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) of Eq. 3.6, (B, d, d)."""
        return torch.diag_embed(self.metric.diagonal(z))

    def log_target(self, z: torch.Tensor) -> torch.Tensor:
        """log of the unnormalised Riemannian uniform density √det G(z)."""
        return self.metric.log_density_and_gradient(z)[0]

    def _latents(self, n, generator):
        options = self.options
        result = hmc(self.metric.log_density_and_gradient, _random_starts(self.metric.centroids, n, generator),
                     steps=options["steps"], leapfrog_steps=options["leapfrog_steps"], step_size=options["step_size"],
                     generator=generator, trace_chains=TRACED_CHAINS, warmup=options["warmup"],
                     target_acceptance=options["target_acceptance"], per_chain=options["per_chain"],
                     step_jitter=options["step_jitter"])
        return result.samples, {"rho": self.metric.rho, **chain_diagnostics(result, self.metric.centroids)}


class PosteriorSampler(Sampler):
    """Copy control: z ~ q_φ(z|xᵢ) for training images xᵢ drawn uniformly, decoded. It re-samples the
    training set through the generator; an augmentation that does no better adds no new anatomy."""

    name = "posterior"

    def __init__(self) -> None:  # no options: an unknown key is a TypeError, not a silent extra
        super().__init__()

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the posterior sampler needs the training data to encode")
        self.means, self.log_vars = posterior_parameters(self.model, train_data)

    def _latents(self, n, generator):
        pick = torch.randint(len(self.means), (n,), generator=generator, device=generator.device)
        noise = torch.randn(n, self.means.shape[1], generator=generator, device=generator.device)
        return self.means[pick] + (0.5 * self.log_vars[pick]).exp() * noise, {}


class JitterSampler(Sampler):
    """Copy control without a model: training images drawn uniformly plus N(0, ``noise_std``²) voxel
    noise, clipped to [0, 1]. Its "latent code" is (training index, noise seed), so a pool is
    reproducible and its sidecars name the image it copies."""

    name = "jitter"
    checks_posterior = False

    def __init__(self, noise_std: float = 0.05) -> None:
        if not noise_std >= 0:
            raise ConfigError(f"the jitter sampler needs noise_std ≥ 0, got {noise_std}")
        super().__init__(noise_std=noise_std)

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the jitter sampler needs the training images")
        self.images = train_data.float().cpu()

    def _latents(self, n, generator):
        pick = torch.randint(len(self.images), (n,), generator=generator, device=generator.device)
        seeds = torch.randint(2**31 - 1, (n,), generator=generator, device=generator.device)
        return torch.stack([pick, seeds], 1).double(), {}

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = 64) -> Iterator[torch.Tensor]:
        for part in latents.cpu().long().split(batch_size):
            noise = torch.stack([torch.randn(self.images.shape[1:], generator=torch.Generator().manual_seed(int(s)))
                                 for s in part[:, 1]])
            yield (self.images[part[:, 0]] + self.options["noise_std"] * noise).clamp(0.0, 1.0)


@torch.no_grad()
def interpolate(sampler: Sampler, x_start: torch.Tensor, x_end: torch.Tensor, points: int = 10,
                nodes: torch.Tensor | None = None) -> Samples:
    """Decoded images along the shortest path under the sampler's metric between the codes of two
    images (1, C, *spatial); graph nodes default to the metric's centroids."""
    if not hasattr(sampler, "metric_tensor"):
        raise ConfigError(f"the {sampler.name} sampler has no metric; use rhvae-hmc, random-walk or geometric")
    start, end = sampler.model.encoder(x_start)[0][0], sampler.model.encoder(x_end)[0][0]
    nodes = nodes if nodes is not None else getattr(sampler, "centroids", None)
    nodes = nodes if nodes is not None else sampler.metric.centroids
    curve = shortest_path(sampler.metric_tensor, start, end, nodes, points=points)
    return Samples(sampler.model.decode(curve), curve, {"riemannian_length": curve_length(sampler.metric_tensor, curve)})


SAMPLERS = {cls.name: cls for cls in (PriorSampler, VAMPSampler, GMMSampler, RHVAEHMCSampler, RandomWalkSampler,
                                      GeometricSampler, TwoStageSampler, PosteriorSampler, JitterSampler)}


def build_sampler(name: str, **options) -> Sampler:
    """The sampler registered under ``name`` with its options."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose among {', '.join(SAMPLERS)}")
    return SAMPLERS[name](**options)


def sampler_config(sampler: Sampler) -> dict:
    """JSON-ready description of a fitted sampler."""
    return {**sampler.config(), "latent_dim": sampler.model.config.latent_dim if sampler.model else None}

