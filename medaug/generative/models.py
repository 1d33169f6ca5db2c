"""VAE, RHVAE (thesis Alg. 1), VAMP-prior VAE and RAEs over shared encoder / decoder networks.

Every model maps a batch x (B, C, *spatial) in [0, 1] to a loss (negative ELBO or RAE objective)
and can estimate log p(x) by importance sampling (:mod:`medaug.generative.likelihood`).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from medaug.generative.config import MODELS, GeneratorConfig
from medaug.generative.densities import (
    kl_standard_normal, log_bernoulli, log_diagonal_normal, log_gaussian, log_standard_normal)
from medaug.generative.leapfrog import tempered_flow
from medaug.generative.metric import Metric, log_normal_metric, lower_factors, sample_velocity
from medaug.nets.conv import ConvDecoder, ConvEncoder, ConvMetric
from medaug.nets.mlp import MLPDecoder, MLPEncoder, MLPMetric
from medaug.registry import NoOptions


class GenerativeModel(nn.Module):
    """Encoder q_φ(z|x) = N(μ, diag σ²), decoder p_θ(x|z) (Bernoulli or fixed-σ Gaussian on sigmoid outputs).

    Models register their ``name`` in :data:`~medaug.generative.config.MODELS`; their settings are
    the shared ``generator`` section (:class:`GeneratorConfig`), so they take no options of their own."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        shape, d = config.input_shape, config.latent_dim
        if config.network == "mlp":
            self.encoder, self.decoder = MLPEncoder(shape, d, config.hidden), MLPDecoder(shape, d, config.hidden)
        else:
            self.encoder, self.decoder = ConvEncoder(shape, d, config.channels), ConvDecoder(shape, d, config.channels)

    def log_px_given_z(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.config.likelihood == "bernoulli":
            return log_bernoulli(x, logits)
        return log_gaussian(x, logits, self.config.gaussian_sigma)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (means of p_θ(x|z)) in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        return log_standard_normal(z)

    def log_weights(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p_θ(x, z)/q_φ(z|x) for one z ~ q_φ(z|x) per row: an unbiased log-estimate of p(x)."""
        mean, log_var = self.encoder(x)
        z = mean + (0.5 * log_var).exp() * torch.randn(mean.shape, generator=generator, device=x.device)
        logits = self.decoder(z)
        return self.log_px_given_z(x, logits) + self.log_prior(z) - log_diagonal_normal(z, mean, log_var)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO, averaged over the batch."""
        return -self.log_weights(x).mean()

    def on_epoch_end(self, batches) -> None:
        """Called by the training loop after each epoch's steps with the training set (an iterable
        of batches); nothing to do here."""


@MODELS.register
class VAE(GenerativeModel):
    """Vanilla VAE; the ELBO uses the closed-form KL to N(0, I)."""

    name = "vae"

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        mean, log_var = self.encoder(x)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        return (kl_standard_normal(mean, log_var) - self.log_px_given_z(x, self.decoder(z))).mean()


@MODELS.register
class VAMP(GenerativeModel):
    """VAE with the VAMP prior p(z) = 1/K Σₖ q_φ(z|uₖ) over K learned pseudo-inputs uₖ."""

    name = "vamp"

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        self.pseudo_inputs = nn.Parameter(torch.rand(config.pseudo_inputs, *config.input_shape))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        mean, log_var = self.encoder(torch.sigmoid(self.pseudo_inputs))
        per_component = log_diagonal_normal(z[:, None, :], mean[None], log_var[None])
        return torch.logsumexp(per_component, dim=1) - math.log(len(mean))


class RAE(GenerativeModel):
    """Regularized autoencoder (deterministic z = μ_φ(x)): reconstruction + β ½‖z‖² + γ R(θ).

    R is ‖θ_decoder‖² (``rae_l2``) or the squared Frobenius norm of the decoder Jacobian at z,
    estimated without bias by ‖Jᵀe‖² with e ~ N(0, I) (``rae_gp``).
    """

    def _objective(self, x, z, logits, penalty) -> torch.Tensor:
        objective = -self.log_px_given_z(x, logits) + self.config.rae_latent_weight * 0.5 * z.pow(2).sum(-1)
        return (objective + self.config.rae_decoder_weight * penalty).mean()


@MODELS.register
class RAEL2(RAE):
    """RAE with the decoder-weight penalty R(θ) = ‖θ_decoder‖²."""

    name = "rae_l2"

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        z, _ = self.encoder(x)
        penalty = sum(p.pow(2).sum() for p in self.decoder.parameters())
        return self._objective(x, z, self.decoder(z), penalty)


@MODELS.register
class RAEGP(RAE):
    """RAE with the gradient penalty R = ‖J_D(z)‖²_F, estimated by ‖Jᵀe‖², e ~ N(0, I)."""

    name = "rae_gp"

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():  # the penalty needs ∂D/∂z even when evaluating
            z, _ = self.encoder(x)
            z = z if z.requires_grad else z.detach().requires_grad_(True)
            logits = self.decoder(z)
            probe = torch.randn_like(logits)
            (jacobian_t_probe,) = torch.autograd.grad((torch.sigmoid(logits) * probe).sum(), z,
                                                      create_graph=create_graph)
        return self._objective(x, z, logits, jacobian_t_probe.pow(2).sum(-1))


@MODELS.register
class RHVAE(GenerativeModel):
    """Riemannian Hamiltonian VAE (thesis §1.3, Alg. 1, Eq. 1.5-1.7).

    In training mode the metric of Eq. 1.7 is built from the batch (centroids μ_φ(xᵢ), factors
    L_ψ(xᵢ)); :meth:`update_metric` stores the whole training set's centroids and factors in
    buffers (saved in the state dict, moved by ``.to()``), used in evaluation and for sampling.
    """

    name = "rhvae"

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        shape, d = config.input_shape, config.latent_dim
        self.metric_net = MLPMetric(shape, d, config.metric_hidden) if config.network == "mlp" else \
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
        config = self.config
        if x is not None and (self.training or len(self.centroids) == 0):
            factors = lower_factors(*self.metric_net(x))
            return Metric(mean.detach(), factors, config.temperature, config.regularization)
        if len(self.centroids) == 0:
            raise RuntimeError("the RHVAE metric is empty: train the model or call update_metric first")
        return Metric(self.centroids, self.factors, config.temperature, config.regularization)

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
                second_order = self.config.second_order and self.training and torch.is_grad_enabled()
                (grad,) = torch.autograd.grad(u.sum(), z_in, create_graph=second_order,
                                              retain_graph=torch.is_grad_enabled())
            return u, grad
        return potential

    def log_weights(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p̂_θ(x) of Eq. 1.6 for one (z₀, v₀) per row, v₀ ~ N(0, G(z₀)) before the 1/√β₀ scaling."""
        config = self.config
        mean, log_var = self.encoder(x)
        z0 = mean + (0.5 * log_var).exp() * torch.randn(mean.shape, generator=generator, device=x.device)
        metric = self.metric(x, mean)
        inverse0 = metric.inverse(z0)
        v0 = sample_velocity(inverse0, generator)
        z_k, v_k, u_k = tempered_flow(z0, v0, metric, self._potential(x), steps=config.leapfrog_steps,
                                      step_size=config.step_size, sqrt_beta_zero=config.sqrt_beta_zero,
                                      fixed_point_iterations=config.fixed_point_iterations)
        log_p = -u_k + log_normal_metric(v_k, metric.inverse(z_k))
        # q(z_K, v_K|x) = q(z₀|x) N(v₀; 0, G(z₀)) β₀^{d/2} / Π_k (β_{k−1}/β_k)^{d/2}: the start v₀/√β₀ has
        # density N(v₀; 0, G) β₀^{d/2} and the tempered leapfrogs contract volume by exactly β₀^{d/2}
        log_q = log_diagonal_normal(z0, mean, log_var) + log_normal_metric(v0, inverse0)
        return log_p - log_q


def build_model(config: GeneratorConfig) -> GenerativeModel:
    """The model registered as ``config.model``."""
    return MODELS.get(config.model, "generator.model")(config)
