"""The VAE with a VAMP prior (a mixture of posteriors at learned pseudo-inputs)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from medaug.configuration import Config, check_at_least
from medaug.generative.config import MODELS, GeneratorConfig
from medaug.generative.densities import log_diagonal_normal
from medaug.generative.models import GenerativeModel


@dataclass
class VAMPOptions(Config):
    section: ClassVar[str] = "vamp options"

    pseudo_inputs: int = 50   # K learned pseudo-inputs

    def validate(self) -> None:
        check_at_least(self, pseudo_inputs=1)


@MODELS.register
class VAMP(GenerativeModel):
    """VAE with the VAMP prior p(z) = 1/K Σₖ q_φ(z|uₖ) over K learned pseudo-inputs uₖ."""

    name = "vamp"
    Options = VAMPOptions

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        self.pseudo_inputs = nn.Parameter(torch.rand(self.options.pseudo_inputs, *config.input_shape))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        mean, log_var = self.encoder(torch.sigmoid(self.pseudo_inputs))
        per_component = log_diagonal_normal(z[:, None, :], mean[None], log_var[None])
        return torch.logsumexp(per_component, dim=1) - math.log(len(mean))
