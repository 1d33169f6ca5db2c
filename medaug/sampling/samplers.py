"""One sampler API: ``fit(model, train_data)`` then ``sample(n, seed=..., batch_size=...)``.

Samplers draw latent codes for all requested images as batched chains, then decode final states
only. Each sampler's configuration is a dataclass saved next to the generator (``to_dict``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from medaug.errors import ConfigError
from medaug.generative.models import RHVAE, VAMP, GenerativeModel
from medaug.generative.leapfrog import Metric
from medaug.sampling.diagnostics import effective_sample_size
from medaug.generative.metric import inverse_metric
from medaug.sampling.geodesics import curve_length, riemannian_random_walk, shortest_path
from medaug.sampling.geometric import build_geometric_metric
from medaug.sampling.hmc import hmc
from medaug.sampling.two_stage import fit_code_vae, sample_codes
from medaug.sampling.volume import log_volume_and_gradient


@dataclass
class Samples:
    """Decoded images (n, C, *spatial) in [0, 1], their latent codes (n, d) and diagnostics."""

    images: torch.Tensor
    latents: torch.Tensor
    diagnostics: dict = field(default_factory=dict)


class Sampler:
    """Base class: subclasses implement ``_fit`` and ``_latents``."""

    name = "base"

    def __init__(self, **options) -> None:
        self.options = options
        self.model: GenerativeModel | None = None

    def fit(self, model: GenerativeModel, train_data: torch.Tensor | None = None) -> Sampler:
        self.model = model.eval()
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
        return self._latents(n, torch.Generator(device=self.device).manual_seed(seed))

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


TRACED_CHAINS = 16  # chains whose whole path is kept for the effective sample size


def _ess(result) -> dict:
    """Mean effective sample size per chain step over latent dimensions (1 = independent draws)."""
    trace = result.trace.detach().cpu().double().numpy()
    ess = effective_sample_size(trace)
    return {"effective_sample_size": float(ess.mean()), "ess_per_draw": float(ess.mean() / trace[:, :, 0].size)}


def posterior_means(model: GenerativeModel, data: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Encoder means of ``data`` (n, d), computed ``batch_size`` images at a time on the model's device."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model.encoder(part.to(device))[0] for part in data.split(batch_size)])


class PriorSampler(Sampler):
    """z ~ N(0, I)."""

    name = "prior"

    def _latents(self, n, generator):
        return torch.randn(n, self.model.config.latent_dim, generator=generator, device=generator.device), {}


class VAMPSampler(Sampler):
    """z ~ 1/K Σₖ q_φ(z|uₖ): a pseudo-input drawn uniformly, then its posterior."""

    name = "vamp"

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


class RHVAEHMCSampler(Sampler):
    """Geometry-aware sampling (Eq. 1.8): HMC on p(z) ∝ 1_S(z) √det G⁻¹(z), S = {‖z‖ ≤ 2 maxᵢ‖cᵢ‖}.

    Chains start at training centroids (drawn uniformly) and run ``steps`` transitions of
    ``leapfrog_steps`` steps of size ``step_size`` (thesis: 300 steps, l = 15, γ ∈ [0.01, 0.05]).
    """

    name = "rhvae-hmc"

    def __init__(self, steps: int = 300, leapfrog_steps: int = 15, step_size: float = 0.03) -> None:
        if steps < 1 or leapfrog_steps < 1 or step_size <= 0:
            raise ConfigError("steps and leapfrog_steps must be ≥ 1 and step_size > 0")
        super().__init__(steps=steps, leapfrog_steps=leapfrog_steps, step_size=step_size)

    def _fit(self, train_data):
        if not isinstance(self.model, RHVAE):
            raise ConfigError("the rhvae-hmc sampler needs an RHVAE")
        if len(self.model.centroids) == 0:
            if train_data is None:
                raise ConfigError("the RHVAE has no stored metric: pass its training data to fit()")
            self.model.update_metric(train_data.split(64))
        centroids = self.model.centroids
        self.centroids, self.outer = centroids, self.model.factors @ self.model.factors.transpose(-1, -2)
        self.radius = 2.0 * float(centroids.norm(dim=1).max())

    def log_density(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.model.config
        return log_volume_and_gradient(z, self.centroids, self.outer, config.temperature, config.regularization)

    def metric_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) = (G⁻¹(z))⁻¹ of Eq. 1.7, (B, d, d)."""
        config = self.model.config
        inverse = inverse_metric(z, self.centroids, self.model.factors, config.temperature, config.regularization,
                                 self.outer)
        return torch.cholesky_inverse(torch.linalg.cholesky(inverse))

    def log_target(self, z: torch.Tensor) -> torch.Tensor:
        """log of the unnormalised target √det G⁻¹(z) (−inf outside the support)."""
        value = self.log_density(z)[0]
        return torch.where(z.norm(dim=1) <= self.radius, value, torch.full_like(value, float("-inf")))

    def _latents(self, n, generator):
        start = self.centroids[torch.randint(len(self.centroids), (n,), generator=generator, device=generator.device)]
        result = hmc(self.log_density, start, steps=self.options["steps"],
                     leapfrog_steps=self.options["leapfrog_steps"], step_size=self.options["step_size"],
                     generator=generator, inside=lambda z: z.norm(dim=1) <= self.radius, trace_chains=TRACED_CHAINS)
        rate = float(result.acceptance.mean())
        return result.samples, {"acceptance_rate": rate, "support_radius": self.radius, **_ess(result)}


class RandomWalkSampler(RHVAEHMCSampler):
    """Riemannian random walk (thesis Alg. 3) on the RHVAE metric, chains started at centroids."""

    name = "random-walk"

    def __init__(self, steps: int = 100, sigma: float = 0.5, shooting_steps: int = 10) -> None:
        if steps < 1 or sigma <= 0 or shooting_steps < 1:
            raise ConfigError("steps and shooting_steps must be ≥ 1 and sigma > 0")
        Sampler.__init__(self, steps=steps, sigma=sigma, shooting_steps=shooting_steps)

    def _latents(self, n, generator):
        config = self.model.config
        metric = Metric(self.centroids, self.model.factors, config.temperature, config.regularization)
        start = self.centroids[torch.randint(len(self.centroids), (n,), generator=generator, device=generator.device)]
        result = riemannian_random_walk(metric, start, steps=self.options["steps"], sigma=self.options["sigma"],
                                        radius=self.radius, generator=generator,
                                        shooting_steps=self.options["shooting_steps"])
        return result.samples, {"acceptance_rate": float(result.acceptance.mean()),
                                        "support_radius": self.radius}


class GeometricSampler(Sampler):
    """Geometric VAE sampling (thesis ch. 3, Alg. 4-5) from any model with a Gaussian encoder:
    HMC on √det G(z) of Eq. 3.6 (thesis: 100 steps, 10 leapfrog steps, ε = 0.01)."""

    name = "geometric"

    def __init__(self, steps: int = 100, leapfrog_steps: int = 10, step_size: float = 0.01,
                 n_centroids: int | None = None, regularization: float = 1e-3, tau: float = 0.0) -> None:
        if steps < 1 or leapfrog_steps < 1 or step_size <= 0 or regularization <= 0 or tau < 0:
            raise ConfigError("steps, leapfrog_steps ≥ 1; step_size, regularization > 0; tau ≥ 0")
        super().__init__(steps=steps, leapfrog_steps=leapfrog_steps, step_size=step_size, n_centroids=n_centroids,
                         regularization=regularization, tau=tau)

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the geometric sampler needs the training data to build its metric")
        with torch.no_grad():
            means, log_vars = (torch.cat(parts) for parts in zip(*(self.model.encoder(x) for x in train_data.split(64))))
        self.metric = build_geometric_metric(means, log_vars, self.options["n_centroids"],
                                             self.options["regularization"], self.options["tau"])

    def metric_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) of Eq. 3.6, (B, d, d)."""
        return torch.diag_embed(self.metric.diagonal(z))

    def log_target(self, z: torch.Tensor) -> torch.Tensor:
        """log of the unnormalised Riemannian uniform density √det G(z)."""
        return self.metric.log_density_and_gradient(z)[0]

    def _latents(self, n, generator):
        start = self.metric.centroids[torch.randint(len(self.metric.centroids), (n,), generator=generator, device=generator.device)]
        result = hmc(self.metric.log_density_and_gradient, start, steps=self.options["steps"],
                     leapfrog_steps=self.options["leapfrog_steps"], step_size=self.options["step_size"],
                     generator=generator, trace_chains=TRACED_CHAINS)
        return result.samples, {"acceptance_rate": float(result.acceptance.mean()), "rho": self.metric.rho,
                                **_ess(result)}


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
                                          GeometricSampler, TwoStageSampler)}


def build_sampler(name: str, **options) -> Sampler:
    """The sampler registered under ``name`` with its options."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose among {', '.join(SAMPLERS)}")
    return SAMPLERS[name](**options)


def sampler_config(sampler: Sampler) -> dict:
    """JSON-ready description of a fitted sampler."""
    return {**sampler.config(), "latent_dim": sampler.model.config.latent_dim if sampler.model else None}

