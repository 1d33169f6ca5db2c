"""Sampling of a latent diffusion model (:mod:`medaug.generative.models.ldm`): DDIM (deterministic
given the starting noise) or DDPM ancestral sampling, through MONAI's inferer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from medaug.configuration import Config, check_at_least
from medaug.errors import ConfigError
from medaug.generative.models.ldm import scheduler
from medaug.sampling.samplers import SAMPLERS
from medaug.sampling.sampler import Sampler

BATCH = 64  # latent maps denoised at a time
SCHEDULERS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}


@dataclass
class LDMSamplerOptions(Config):
    section: ClassVar[str] = "ldm sampler options"

    steps: int = 50             # denoising steps (at most the model's train_timesteps)
    scheduler: str = "ddim"     # ddim: deterministic given the starting noise; ddpm: ancestral, noise at each step

    def validate(self) -> None:
        check_at_least(self, steps=1)
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"{self.section}: scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")


@SAMPLERS.register
class LDMSampler(Sampler):
    """Latent diffusion: DDIM or DDPM from Gaussian noise in the autoencoder's latent space (MONAI's inferer)."""

    name = "ldm"
    Options = LDMSamplerOptions
    models = ("ldm",)
    checks_posterior = False  # no VAE posterior to collapse: the autoencoder is checked by its reconstructions

    @classmethod
    def generator_problem(cls, config) -> str | None:
        if config.model_options().stage != "diffusion":
            return ("this is the shared autoencoder of a latent diffusion model, not a generator: sample from a "
                    "class's model (stage: diffusion), which holds the autoencoder it was trained on")
        return None

    def _latents(self, n, generator):
        model = self.model
        problem = self.generator_problem(model.config)
        if problem:
            raise ConfigError(problem)
        schedule = scheduler(model.options, SCHEDULERS[self.options.scheduler])
        schedule.set_timesteps(min(self.options.steps, model.options.train_timesteps), device=self.device)
        noise = torch.randn((n, *model.latent_shape), generator=generator, device=self.device)
        inferer = DiffusionInferer(schedule)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator, device=generator.device)))
            latents = torch.cat([inferer.sample(part, model.unet, scheduler=schedule, verbose=False)
                                 for part in noise.split(BATCH)])
        return latents.flatten(1), {"denoising_steps": len(schedule.timesteps)}
