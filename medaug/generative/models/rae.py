"""Regularized autoencoders (RAE): decoder-weight (``rae_l2``) and gradient (``rae_gp``) penalties."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from medaug.configuration import Config, check_at_least
from medaug.generative.config import MODELS
from medaug.generative.models import GenerativeModel


@dataclass
class RAEOptions(Config):
    section: ClassVar[str] = "rae options"

    latent_weight: float = 1e-2    # β
    decoder_weight: float = 1e-4   # γ

    def validate(self) -> None:
        check_at_least(self, latent_weight=0.0, decoder_weight=0.0)


class RAE(GenerativeModel):
    """Regularized autoencoder (deterministic z = μ_φ(x)): reconstruction + β ½‖z‖² + γ R(θ).

    R is ‖θ_decoder‖² (``rae_l2``) or the squared Frobenius norm of the decoder Jacobian at z,
    estimated without bias by ‖Jᵀe‖² with e ~ N(0, I) (``rae_gp``).
    """

    Options = RAEOptions

    def _objective(self, x, z, logits, penalty) -> torch.Tensor:
        objective = -self.log_px_given_z(x, logits) + self.options.latent_weight * 0.5 * z.pow(2).sum(-1)
        return (objective + self.options.decoder_weight * penalty).mean()


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
