"""The vanilla VAE."""

from __future__ import annotations

import torch

from medaug.generative.config import MODELS
from medaug.generative.densities import kl_standard_normal
from medaug.generative.models import GenerativeModel


@MODELS.register
class VAE(GenerativeModel):
    """Vanilla VAE; the ELBO uses the closed-form KL to N(0, I)."""

    name = "vae"

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        mean, log_var = self.encoder(x)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        return (kl_standard_normal(mean, log_var) - self.log_px_given_z(x, self.decoder(z))).mean()
