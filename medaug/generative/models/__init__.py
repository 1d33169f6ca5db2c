"""Generative models, one module each (VAE, RHVAE, VAMP-prior VAE, RAEs), over shared encoder /
decoder networks; :class:`GenerativeModel` is their base.

A model registers itself in :data:`~medaug.generative.config.MODELS` with ``@MODELS.register``
and declares its own options as an ``Options`` dataclass (``generator.options`` in a YAML file);
the common settings (shape, latent size, networks, likelihood) are :class:`GeneratorConfig`.
Every model maps a batch x (B, C, *spatial) in [0, 1] to a loss (negative ELBO or RAE objective)
and can estimate log p(x) by importance sampling (:mod:`medaug.generative.likelihood`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from medaug.configuration import Config
from medaug.generative.config import MODELS, GeneratorConfig
from medaug.generative.densities import log_bernoulli, log_diagonal_normal, log_gaussian, log_standard_normal
from medaug.nets.conv import ConvDecoder, ConvEncoder
from medaug.nets.mlp import MLPDecoder, MLPEncoder
from medaug.registry import NoOptions


SHARED_FOLDER = "shared"  # a model's shared stage, trained on every class, beside the classes' folders


class GenerativeModel(nn.Module):
    """Encoder q_φ(z|x) = N(μ, diag σ²), decoder p_θ(x|z) (Bernoulli or fixed-σ Gaussian on sigmoid outputs).

    Models register their ``name`` in :data:`~medaug.generative.config.MODELS`; ``options`` are the
    model's own (its ``Options`` dataclass, from ``config.options``)."""

    name: ClassVar[str]
    Options: ClassVar[type[Config]] = NoOptions

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.options = config.model_options()
        self.build_networks()

    def build_networks(self) -> None:
        """``encoder`` x ↦ (μ, log σ²) and ``decoder`` z ↦ logits: MLP or convolutional, from the
        common settings (``network``, ``hidden``, ``channels``, ``latent_dim``)."""
        config = self.config
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

    @classmethod
    def shared_stage(cls, config: GeneratorConfig) -> GeneratorConfig | None:
        """The configuration of a part trained once on every class's training images, which each
        class's model then starts from (:meth:`start_from`); None (here) when the model is trained
        whole per class."""
        return None

    @classmethod
    def trainer_for(cls, config: GeneratorConfig, trainer):
        """The trainer settings (a :class:`~medaug.generative.trainer.TrainerConfig`) this
        configuration trains with (here: ``trainer`` unchanged)."""
        return trainer

    def start_from(self, shared: "GenerativeModel") -> None:
        """Take the trained shared part (:meth:`shared_stage`) before training this class's model."""
        raise NotImplementedError(f"a {self.name} model has no shared stage")


def build_model(config: GeneratorConfig) -> GenerativeModel:
    """The model registered as ``config.model``."""
    return MODELS.get(config.model, "generator.model")(config)
