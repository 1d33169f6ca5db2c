"""z ~ N(0, I): the VAE prior."""

from __future__ import annotations

import torch

from medaug.sampling.sampler import Sampler
from medaug.sampling.samplers import SAMPLERS


@SAMPLERS.register
class PriorSampler(Sampler):
    """z ~ N(0, I), the generator's prior."""

    name = "prior"

    def _latents(self, n, generator):
        return torch.randn(n, self.model.config.latent_dim, generator=generator, device=generator.device), {}
