"""Copy control without a model: training images plus voxel noise."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch

from medaug.compute import INFERENCE_BATCH
from medaug.configuration import Config, check_at_least
from medaug.errors import ConfigError
from medaug.sampling.sampler import Sampler
from medaug.sampling.samplers import SAMPLERS


@dataclass
class JitterOptions(Config):
    section: ClassVar[str] = "jitter sampler options"

    noise_std: float = 0.05

    def validate(self) -> None:
        check_at_least(self, noise_std=0)


@SAMPLERS.register
class JitterSampler(Sampler):
    """Copy control: training images drawn uniformly plus N(0, noise_std²) voxel noise, clipped to [0, 1].

    Its "latent code" is (training index, noise seed), so a pool is reproducible and its sidecars
    name the image it copies."""

    name = "jitter"
    Options = JitterOptions
    checks_posterior = False

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the jitter sampler needs the training images")
        self.images = train_data.float().cpu()

    def _latents(self, n, generator):
        pick = torch.randint(len(self.images), (n,), generator=generator, device=generator.device)
        seeds = torch.randint(2**31 - 1, (n,), generator=generator, device=generator.device)
        return torch.stack([pick, seeds], 1).double(), {}

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> Iterator[torch.Tensor]:
        for part in latents.cpu().long().split(batch_size):
            noise = torch.stack([torch.randn(self.images.shape[1:], generator=torch.Generator().manual_seed(int(s)))
                                 for s in part[:, 1]])
            yield (self.images[part[:, 0]] + self.options.noise_std * noise).clamp(0.0, 1.0)
