"""Two-stage VAE: a second VAE on the training posterior means (:mod:`medaug.sampling.two_stage`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from medaug.configuration import Config, check_at_least, check_seed
from medaug.errors import ConfigError
from medaug.sampling.sampler import Sampler, posterior_means
from medaug.sampling.samplers import SAMPLERS
from medaug.sampling.two_stage import fit_code_vae, sample_codes


@dataclass
class TwoStageOptions(Config):
    section: ClassVar[str] = "two-stage sampler options"

    latent_dim: int | None = None   # None: the first VAE's latent dimension
    epochs: int = 300
    seed: int = 0

    def validate(self) -> None:
        check_at_least(self, epochs=1, latent_dim=1)
        check_seed(self.seed, f"{self.section}.seed")


@SAMPLERS.register
class TwoStageSampler(Sampler):
    """Two-stage VAE: a second VAE fitted on the training posterior means, sampled from its prior."""

    name = "two-stage"
    Options = TwoStageOptions

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the two-stage sampler needs the training data to fit its second VAE")
        codes = posterior_means(self.model, train_data)
        latent_dim = self.options.latent_dim or codes.shape[1]
        self.second, self.centre, self.scale = fit_code_vae(codes, latent_dim, self.options.epochs, self.options.seed)

    def _latents(self, n, generator):
        return sample_codes(self.second, self.centre, self.scale, n, generator), {}
