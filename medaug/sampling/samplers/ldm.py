"""DDIM sampling of a latent diffusion model (:mod:`medaug.generative.models.ldm`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import DDIMScheduler

from medaug.configuration import Config, check_at_least
from medaug.errors import ConfigError
from medaug.generative.models.ldm import scheduler
from medaug.sampling.samplers import SAMPLERS
from medaug.sampling.sampler import Sampler

BATCH = 64  # latent maps denoised at a time


@dataclass
class LDMSamplerOptions(Config):
    section: ClassVar[str] = "ldm sampler options"

    steps: int = 50   # DDIM steps (deterministic given the starting noise)

    def validate(self) -> None:
        check_at_least(self, steps=1)


@SAMPLERS.register
class LDMSampler(Sampler):
    """Latent diffusion: DDIM from Gaussian noise in the autoencoder's latent space (MONAI's inferer)."""

    name = "ldm"
    Options = LDMSamplerOptions
    models = ("ldm",)
    checks_posterior = False  # no VAE posterior to collapse: the autoencoder is checked by its reconstructions

    def _latents(self, n, generator):
        model = self.model
        if model.options.stage != "diffusion":
            raise ConfigError("this is the shared autoencoder of a latent diffusion model, not a generator: sample "
                              "from a class's model (stage: diffusion), which holds the autoencoder it was trained on")
        ddim = scheduler(model.options, DDIMScheduler)
        ddim.set_timesteps(min(self.options.steps, model.options.train_timesteps), device=self.device)
        noise = torch.randn((n, *model.latent_shape), generator=generator, device=self.device)
        inferer = DiffusionInferer(ddim)
        latents = torch.cat([inferer.sample(part, model.unet, scheduler=ddim, verbose=False) for part in noise.split(BATCH)])
        return latents.flatten(1), {"ddim_steps": len(ddim.timesteps)}
