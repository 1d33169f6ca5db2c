"""Latent diffusion (Rombach et al. 2022) from MONAI's own components, in two stages as the paper
trains it: an ``AutoencoderKL`` (stage ``autoencoder``), trained once on the training images of
every class, then per class a ``DiffusionModelUNet`` (stage ``diffusion``) that learns DDPM noise
prediction (``DiffusionInferer``) on the frozen autoencoder's standardised latent means; sampled
by DDIM or DDPM (:mod:`medaug.sampling.samplers.ldm`). A class's model holds the autoencoder it was
trained on, so its folder is a whole generator.

Its latent code z is the flattened latent map, scaled by ``latent_scale`` (1 / the standard
deviation of the training images' latent means, set after each autoencoder epoch), so the copy
controls (``posterior``, ``jitter``) and the quality measures work on it as on the VAEs. The
images are zero-padded to a multiple of the networks' downsampling and cropped back when decoded.
The common ``latent_dim``, ``network``, ``hidden`` and ``channels`` settings are not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from monai.inferers import DiffusionInferer
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler

from medaug.configuration import Config, check_at_least
from medaug.errors import ConfigError
from medaug.generative.config import MODELS, GeneratorConfig
from medaug.generative.models import GenerativeModel

SCHEDULE = {"schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}  # MONAI's 3D LDM tutorial
STAGES = ("autoencoder", "diffusion")


@dataclass
class LDMOptions(Config):
    section: ClassVar[str] = "ldm options"

    autoencoder_channels: tuple[int, ...] = (16, 32, 32)   # one downsampling between levels
    latent_channels: int = 3
    unet_channels: tuple[int, ...] = (32, 64)
    res_blocks: int = 1
    norm_groups: int = 8
    kl_weight: float = 1e-6
    train_timesteps: int = 1000
    stage: str = "diffusion"   # autoencoder: the shared autoencoder; diffusion: a class's denoiser on it
    autoencoder_steps: int = 0  # optimiser steps of the autoencoder stage (0: the trainer's max_steps)

    def validate(self) -> None:
        check_at_least(self, autoencoder_channels=1, latent_channels=1, unet_channels=1, res_blocks=1,
                       norm_groups=1, train_timesteps=2, kl_weight=0.0, autoencoder_steps=0)
        if self.stage not in STAGES:
            raise ConfigError(f"{self.section}: stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if not self.autoencoder_channels or not self.unet_channels:
            raise ConfigError(f"{self.section}: autoencoder_channels and unet_channels need at least one level")
        if any(c % self.norm_groups for c in (*self.autoencoder_channels, *self.unet_channels)):
            raise ConfigError(f"{self.section}: norm_groups {self.norm_groups} must divide every channel count, got "
                              f"autoencoder_channels {list(self.autoencoder_channels)}, unet_channels "
                              f"{list(self.unet_channels)}")

    @property
    def downsampling(self) -> int:
        """Factor by which the image side must divide: the autoencoder's and then the UNet's."""
        return 2 ** (len(self.autoencoder_channels) - 1) * 2 ** (len(self.unet_channels) - 1)


def scheduler(options: LDMOptions, kind: type = DDPMScheduler):
    """The noise schedule the model is trained with (DDPM), or a sampler of it (``DDIMScheduler``)."""
    return kind(num_train_timesteps=options.train_timesteps, clip_sample=False, **SCHEDULE)


@MODELS.register
class LatentDiffusion(GenerativeModel):
    """Latent diffusion: MONAI AutoencoderKL + DiffusionModelUNet, DDPM training, DDIM or DDPM sampling.
    Stage ``autoencoder`` builds and trains the autoencoder alone; stage ``diffusion`` trains the
    UNet on an autoencoder taken with :meth:`start_from`."""

    name = "ldm"
    Options = LDMOptions

    def build_networks(self) -> None:
        options, (channels, *spatial) = self.options, self.config.input_shape
        dims = len(spatial)
        self.autoencoder = AutoencoderKL(
            spatial_dims=dims, in_channels=channels, out_channels=channels, channels=options.autoencoder_channels,
            latent_channels=options.latent_channels, num_res_blocks=options.res_blocks,
            attention_levels=(False,) * len(options.autoencoder_channels), norm_num_groups=options.norm_groups,
            with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)
        if options.stage == "diffusion":
            self.unet = DiffusionModelUNet(
                spatial_dims=dims, in_channels=options.latent_channels, out_channels=options.latent_channels,
                channels=options.unet_channels, attention_levels=(False,) * len(options.unet_channels),
                num_res_blocks=options.res_blocks, norm_num_groups=options.norm_groups)
        factor = options.downsampling
        self.padded = tuple(math.ceil(side / factor) * factor for side in spatial)
        reduction = 2 ** (len(options.autoencoder_channels) - 1)
        self.latent_shape = (options.latent_channels, *(side // reduction for side in self.padded))
        self.register_buffer("latent_scale", torch.ones(()))
        self.register_buffer("has_autoencoder", torch.tensor(options.stage == "autoencoder"))
        self.noise_schedule = scheduler(options)

    @classmethod
    def shared_stage(cls, config: GeneratorConfig) -> GeneratorConfig | None:
        """The autoencoder stage of a diffusion-stage configuration (None for an autoencoder). The
        denoiser's own settings are neutralised (its channels set to ``norm_groups``, keeping the
        number of levels, which decides the padding; the default ``train_timesteps``), so that
        changing them does not call for another autoencoder."""
        options = config.model_options()
        if options.stage == "autoencoder":
            return None
        stage = replace(options, stage="autoencoder", unet_channels=(options.norm_groups,) * len(options.unet_channels),
                        train_timesteps=LDMOptions.train_timesteps)
        return replace(config, options=stage.to_dict())

    @classmethod
    def trainer_for(cls, config: GeneratorConfig, trainer):
        """The autoencoder stage stops after ``autoencoder_steps`` when set (its reconstruction loss
        keeps creeping down long after the images are reconstructed; the denoiser needs the steps)."""
        options = config.model_options()
        if options.stage != "autoencoder" or not options.autoencoder_steps:
            return trainer
        steps = options.autoencoder_steps
        return replace(trainer, max_steps=steps, patience_steps=min(trainer.patience_steps, steps))

    def start_from(self, shared: GenerativeModel) -> None:
        """Take a trained autoencoder-stage model's autoencoder and latent scale (frozen)."""
        if not isinstance(shared, LatentDiffusion) or shared.options.stage != "autoencoder":
            raise ConfigError(f"a latent diffusion model starts from an ldm autoencoder stage, got a {shared.name}"
                              + (f" at stage {shared.options.stage}" if isinstance(shared, LatentDiffusion) else ""))
        self.autoencoder.load_state_dict(shared.autoencoder.state_dict())
        self.autoencoder.requires_grad_(False)
        self.latent_scale.copy_(shared.latent_scale)
        self.has_autoencoder.fill_(True)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        pad = [amount for side, target in zip(reversed(x.shape[2:]), reversed(self.padded)) for amount in (0, target - side)]
        return F.pad(x, pad)

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        return x[(slice(None), slice(None), *(slice(0, side) for side in self.config.input_shape[1:]))]

    def encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of the scaled latent map, flattened (B, C·h·w·d)."""
        mean, sigma = self.autoencoder.encode(self._pad(x))
        return (mean * self.latent_scale).flatten(1), (2 * torch.log(sigma * self.latent_scale)).flatten(1)

    def decoder(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of the images of flattened scaled latent maps z."""
        return self._crop(self.autoencoder.decode(z.view(len(z), *self.latent_shape) / self.latent_scale))

    def log_weights(self, x, generator=None):
        raise NotImplementedError("a latent diffusion model has no tractable log-likelihood bound here; "
                                  "compare it by its samples (quality measures, classifier runs)")

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Stage autoencoder: reconstruction − log p(x|z) + ``kl_weight`` · KL(q(z|x) ‖ N(0, I)).
        Stage diffusion: the UNet's noise-prediction MSE (DDPM, uniform timesteps) on the frozen
        autoencoder's scaled latent means."""
        if self.options.stage == "autoencoder":
            mean, sigma = self.autoencoder.encode(self._pad(x))
            z = self.autoencoder.sampling(mean, sigma)
            reconstruction = -self.log_px_given_z(x, self._crop(self.autoencoder.decode(z)))
            kl = 0.5 * (mean.pow(2) + sigma.pow(2) - 2 * torch.log(sigma) - 1).flatten(1).sum(1)
            return (reconstruction + self.options.kl_weight * kl).mean()
        if not self.has_autoencoder:
            raise ConfigError("a latent diffusion model's diffusion stage trains on a trained autoencoder: train the "
                              "stage: autoencoder model first and give it to start_from")
        with torch.no_grad():
            latents = self.autoencoder.encode(self._pad(x))[0] * self.latent_scale
        noise = torch.randn_like(latents)
        steps = torch.randint(0, self.options.train_timesteps, (len(x),), device=x.device)
        prediction = DiffusionInferer(self.noise_schedule)(inputs=latents, diffusion_model=self.unet, noise=noise,
                                                           timesteps=steps)
        return F.mse_loss(prediction.float(), noise)

    @torch.no_grad()
    def on_epoch_end(self, batches) -> None:
        """Stage autoencoder: the latent scale follows the autoencoder, 1 / std of the training
        images' latent means (fixed in stage diffusion)."""
        if self.options.stage != "autoencoder":
            return
        was_training = self.training
        self.eval()
        means = torch.cat([self.autoencoder.encode(self._pad(x))[0].flatten() for x in batches])
        self.latent_scale.fill_(1.0 / max(float(means.std()), 1e-6))
        self.train(was_training)
