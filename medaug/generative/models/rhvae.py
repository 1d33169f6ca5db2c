"""The Riemannian Hamiltonian VAE (thesis §1.3, Alg. 1, Eq. 1.5-1.7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from medaug.configuration import Config, check_at_least
from medaug.errors import ConfigError
from medaug.generative.config import MODELS, GeneratorConfig
from medaug.generative.densities import log_diagonal_normal, log_standard_normal
from medaug.generative.leapfrog import tempered_flow
from medaug.generative.metric import Metric, log_normal_metric, lower_factors, sample_velocity
from medaug.generative.models import GenerativeModel
from medaug.nets.conv import ConvMetric
from medaug.nets.mlp import MLPMetric


@dataclass
class RHVAEOptions(Config):
    """Flow and metric settings (defaults: thesis Table 1.14 for ADNI)."""

    section: ClassVar[str] = "rhvae options"

    leapfrog_steps: int = 3            # K
    step_size: float = 1e-3            # ε
    temperature: float = 1.5           # T of Eq. 1.7
    regularization: float = 1e-2       # λ of Eq. 1.7
    sqrt_beta_zero: float = 0.3        # √β₀ of the tempering
    fixed_point_iterations: int = 3    # of the implicit leapfrog steps
    # False: ∇U inside the leapfrog is a constant for the parameter gradient (a first-order
    # approximation; the ELBO value is unchanged; pythae differentiates its last half-step only).
    # True: exact gradient of Eq. 1.6 through the decoder gradients (double backward, about twice the cost).
    second_order: bool = False
    metric_hidden: int = 400           # units of the MLP metric network

    def validate(self) -> None:
        check_at_least(self, leapfrog_steps=1, fixed_point_iterations=1, metric_hidden=1)
        if not 0.0 < self.sqrt_beta_zero <= 1.0:
            raise ConfigError(f"{self.section}: sqrt_beta_zero must be in (0, 1], got {self.sqrt_beta_zero}")
        if min(self.step_size, self.temperature, self.regularization) <= 0:
            raise ConfigError(f"{self.section}: step_size, temperature and regularization must be > 0")


@MODELS.register
class RHVAE(GenerativeModel):
    """Riemannian Hamiltonian VAE (thesis §1.3, Alg. 1, Eq. 1.5-1.7).

    In training mode the metric of Eq. 1.7 is built from the batch (centroids μ_φ(xᵢ), factors
    L_ψ(xᵢ)); :meth:`update_metric` stores the whole training set's centroids and factors in
    buffers (saved in the state dict, moved by ``.to()``), used in evaluation and for sampling.
    """

    name = "rhvae"
    Options = RHVAEOptions

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        shape, d = config.input_shape, config.latent_dim
        self.metric_net = MLPMetric(shape, d, self.options.metric_hidden) if config.network == "mlp" else \
            ConvMetric(shape, d, config.channels)
        self.register_buffer("centroids", torch.zeros(0, d))
        self.register_buffer("factors", torch.zeros(0, d, d))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("centroids", "factors"):  # the stored metric's size is the training set's
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def metric(self, x: torch.Tensor | None = None, mean: torch.Tensor | None = None) -> Metric:
        """The batch metric (training, from x and its means) or the stored training-set metric."""
        options = self.options
        if x is not None and (self.training or len(self.centroids) == 0):
            factors = lower_factors(*self.metric_net(x))
            return Metric(mean.detach(), factors, options.temperature, options.regularization)
        if len(self.centroids) == 0:
            raise RuntimeError("the RHVAE metric is empty: train the model or call update_metric first")
        return Metric(self.centroids, self.factors, options.temperature, options.regularization)

    @torch.no_grad()
    def update_metric(self, batches) -> None:
        """Store centroids μ_φ(xᵢ) and factors L_ψ(xᵢ) of every training image (iterable of batches)."""
        was_training = self.training
        self.eval()
        centroids, factors = [], []
        for x in batches:
            mean, _ = self.encoder(x)
            centroids.append(mean)
            factors.append(lower_factors(*self.metric_net(x)))
        self.centroids, self.factors = torch.cat(centroids), torch.cat(factors)
        self.train(was_training)

    def on_epoch_end(self, batches) -> None:
        """After each training epoch: the stored metric follows the new encoder and metric network."""
        self.update_metric(batches)

    def _potential(self, x: torch.Tensor):
        """U(z) = −log p(x|z) − log p(z) and ∇U; one decoder pass per position.

        The forward graph is kept while training (the last position's U is the reconstruction
        term of the ELBO); ∇U itself is differentiated only with ``second_order``.
        """
        def potential(z: torch.Tensor):
            with torch.enable_grad():
                z_in = z if z.requires_grad else z.detach().requires_grad_(True)
                u = -(self.log_px_given_z(x, self.decoder(z_in)) + log_standard_normal(z_in))
                second_order = self.options.second_order and self.training and torch.is_grad_enabled()
                (grad,) = torch.autograd.grad(u.sum(), z_in, create_graph=second_order,
                                              retain_graph=torch.is_grad_enabled())
            return u, grad
        return potential

    def log_weights(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p̂_θ(x) of Eq. 1.6 for one (z₀, v₀) per row, v₀ ~ N(0, G(z₀)) before the 1/√β₀ scaling."""
        options = self.options
        mean, log_var = self.encoder(x)
        z0 = mean + (0.5 * log_var).exp() * torch.randn(mean.shape, generator=generator, device=x.device)
        metric = self.metric(x, mean)
        inverse0 = metric.inverse(z0)
        v0 = sample_velocity(inverse0, generator)
        z_k, v_k, u_k = tempered_flow(z0, v0, metric, self._potential(x), steps=options.leapfrog_steps,
                                      step_size=options.step_size, sqrt_beta_zero=options.sqrt_beta_zero,
                                      fixed_point_iterations=options.fixed_point_iterations)
        log_p = -u_k + log_normal_metric(v_k, metric.inverse(z_k))
        # q(z_K, v_K|x) = q(z₀|x) N(v₀; 0, G(z₀)) β₀^{d/2} / Π_k (β_{k−1}/β_k)^{d/2}: the start v₀/√β₀ has
        # density N(v₀; 0, G) β₀^{d/2} and the tempered leapfrogs contract volume by exactly β₀^{d/2}
        log_q = log_diagonal_normal(z0, mean, log_var) + log_normal_metric(v0, inverse0)
        return log_p - log_q
