"""Longitudinal VAE with normalizing flows (thesis ch. 6).

Each visit l of a sequence has a latent z_l; the latents of one subject are linked by one
invertible flow per transition (Eq. 6.3, 6.5)

    z_0 ~ p(z_0),   z_l = f_l(z_{l−1}),   p(z_j) = p(z_0) Π_{l≤j} |det ∂f_l/∂z_{l−1}|⁻¹   (Eq. 6.4)

with f_l an IAF (MADE networks, zuko): going forward in time is one network pass, going back is
sequential. Training (Alg. 6) infers one observed anchor j at random per subject and scores the
whole observed sequence from it:

    L = −mean_{l observed} log p_θ(x_l | z_l) + log q_φ(z_j | x_j) − log p(z_j).

Missing visits never enter a loss (their values are ignored); Alg. 7 / Eq. 6.8 imputes them from
the anchor whose propagated sequence best explains the observed visits. Variants (§6.3.4): a VAMP
prior on z_0 (``generator.model = "vamp"``) and an IAF-enriched posterior (``posterior = "iaf"``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import ClassVar

import torch
import zuko
from torch import nn

from medaug.compute import resolve_device
from medaug.configuration import Config, check_device, check_seed
from medaug.errors import ConfigError, InputDataError
from medaug.generative.config import GeneratorConfig
from medaug.generative.densities import log_diagonal_normal
from medaug.generative.likelihood import importance_log_likelihood
from medaug.generative.models import GenerativeModel, build_model
from medaug.sampling.samplers import Sampler, build_sampler
from medaug.training import Hooks, LoopConfig, TrainingLoop

logger = logging.getLogger(__name__)

POSTERIORS = ("gaussian", "iaf")


@dataclass
class FlowVAEConfig(Config):
    """Networks and flows (App. 6.7.3: 2 IAF blocks of 3-layer MADE with 128 units per transition;
    VAMP prior from ``generator.options.pseudo_inputs``; IAF posterior of 3 blocks of 2-layer MADE)."""

    section: ClassVar[str] = 'flow'

    generator: GeneratorConfig
    visits: int
    flow_transforms: int = 2
    made_layers: int = 3
    made_hidden: int = 128
    posterior: str = "gaussian"
    posterior_transforms: int = 3
    posterior_made_layers: int = 2

    def validate(self) -> None:
        if self.generator.model not in ("vae", "vamp"):
            raise ConfigError(f"the longitudinal VAE uses generator.model 'vae' (N(0, I) prior) or 'vamp' "
                              f"(VAMP prior), got {self.generator.model!r}")
        if self.visits < 2:
            raise ConfigError(f"visits must be ≥ 2 (one flow per transition), got {self.visits}")
        if min(self.flow_transforms, self.made_layers, self.made_hidden, self.posterior_transforms,
               self.posterior_made_layers) < 1:
            raise ConfigError("flow_transforms, made_layers, made_hidden and the posterior flow sizes must be ≥ 1")
        if self.posterior not in POSTERIORS:
            raise ConfigError(f"unknown posterior {self.posterior!r}; choose among {', '.join(POSTERIORS)}")


def _iaf(latent_dim: int, transforms: int, layers: int, hidden: int) -> nn.Module:
    """A lazy composition of masked autoregressive transforms (alternating variable order)."""
    return zuko.flows.MAF(latent_dim, transforms=transforms, hidden_features=[hidden] * layers).transform


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[i, index[i]] for every subject i."""
    return values[torch.arange(len(values), device=values.device), index]


def random_observed(mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One observed visit index per subject, uniformly among its observed visits (Alg. 6)."""
    weights = mask.float() + 1e-12 * (~mask.any(1, keepdim=True)).float()
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


class LongitudinalFlowVAE(nn.Module):
    """Encoder q_φ(z|x), decoder p_θ(x|z) and prior p(z_0) from a VAE / VAMP ``frame``; flows f_l."""

    def __init__(self, config: FlowVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.frame: GenerativeModel = build_model(config.generator)
        d = config.generator.latent_dim
        self.transitions = nn.ModuleList(_iaf(d, config.flow_transforms, config.made_layers, config.made_hidden)
                                         for _ in range(config.visits - 1))
        self.posterior_flow = _iaf(d, config.posterior_transforms, config.posterior_made_layers,
                                   config.made_hidden) if config.posterior == "iaf" else None

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None,
               mean_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ q_φ(z|x) and log q_φ(z|x); with the IAF posterior z = g(z′), log q = log N(z′) − log|det ∂g|."""
        mean, log_var = self.frame.encoder(x)
        noise = torch.zeros_like(mean) if mean_only else torch.randn(mean.shape, generator=generator,
                                                                     device=mean.device)
        z = mean + (0.5 * log_var).exp() * noise
        log_q = log_diagonal_normal(z, mean, log_var)
        if self.posterior_flow is not None:
            z, ladj = self.posterior_flow().call_and_ladj(z)
            log_q = log_q - ladj
        return z, log_q

    def propagate(self, z_anchor: torch.Tensor, anchor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 6.5 from each subject's anchor: latents (N, T, d) and Σ_{l=1}^{j} log|det ∂f_l⁻¹/∂z_l| (N,)."""
        visits = self.config.visits
        latents = [z_anchor] * visits  # right at the anchor; every other slot is set below
        for l in range(1, visits):  # future: z_l = f_l(z_{l−1}), only where the anchor is earlier
            after = (anchor < l).nonzero().squeeze(1)
            if len(after):
                latents[l] = latents[l].index_put((after,), self.transitions[l - 1]()(latents[l - 1][after]))
        log_det = torch.zeros(len(z_anchor), device=z_anchor.device)
        for l in range(visits - 2, -1, -1):  # past: z_l = f_{l+1}⁻¹(z_{l+1}), only where the anchor is later
            before = (anchor > l).nonzero().squeeze(1)
            if len(before) == 0:
                continue
            back, ladj = self.transitions[l]().inv.call_and_ladj(latents[l + 1][before])
            latents[l] = latents[l].index_put((before,), back)
            log_det = log_det.index_put((before,), log_det[before] + ladj)
        return torch.stack(latents, 1), log_det

    def visit_log_likelihoods(self, values: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """log p_θ(x_l | z_l) for every (subject, visit), (N, T)."""
        n, t = latents.shape[:2]
        logits = self.frame.decoder(latents.reshape(n * t, -1))
        return self.frame.log_px_given_z(values.reshape(n * t, *values.shape[2:]), logits).view(n, t)

    def _anchored_terms(self, values, mask, anchor, generator=None):
        """(log p(x_l|z_l) (N, T), log p(z_j) − log q(z_j|x_j) (N,)) for one posterior draw at the anchor."""
        z_anchor, log_q = self.encode(_gather(values, anchor), generator)
        latents, log_det = self.propagate(z_anchor, anchor)
        log_prior = self.frame.log_prior(latents[:, 0]) + log_det
        return self.visit_log_likelihoods(values, latents) * mask, log_prior - log_q

    def loss(self, values: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Alg. 6 averaged over subjects, with the reconstruction averaged over observed visits."""
        anchor = random_observed(mask, generator)
        reconstruction, prior_minus_posterior = self._anchored_terms(values, mask, anchor, generator)
        mean_reconstruction = reconstruction.sum(1) / mask.sum(1).clamp(min=1)
        return -(mean_reconstruction + prior_minus_posterior).mean()

    def warmup_loss(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative ELBO of the frame VAE on the observed visits taken independently (App. 6.7.3 warm-up)."""
        return self.frame.loss(values[mask])

    @torch.no_grad()
    def joint_log_likelihood(self, values: torch.Tensor, mask: torch.Tensor, samples: int = 100, *,
                             seed: int = 0, chunk: int = 64) -> torch.Tensor:
        """log p(x_observed) per subject by importance sampling with the first observed visit as anchor:
        log (1/S) Σ_s Π_l p(x_l|z_l^s) p(z_j^s) / q(z_j^s|x_j), (N,)."""
        generator = torch.Generator(device=values.device).manual_seed(seed)
        anchor = mask.float().argmax(1)
        estimates = []
        for part in torch.arange(len(values), device=values.device).split(chunk):
            v, m, a = (t[part].repeat_interleave(samples, 0) for t in (values, mask, anchor))
            reconstruction, prior_minus_posterior = self._anchored_terms(v, m, a, generator)
            log_w = (reconstruction.sum(1) + prior_minus_posterior).view(len(part), samples)
            estimates.append(torch.logsumexp(log_w, 1) - math.log(samples))
        return torch.cat(estimates)

    @torch.no_grad()
    def impute(self, values: torch.Tensor, mask: torch.Tensor, draws: int = 1, *, seed: int = 0,
               chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Alg. 7 / Eq. 6.8: from every observed anchor j (``draws`` posterior samples each; 0 uses the
        posterior mean) propagate a sequence, keep the one maximizing Σ_{l observed} log p(x_l|z_{l,j}).
        All candidates of ``chunk`` subjects form one batch. Returns the decoded means of the kept
        sequences (N, T, ...) and their anchors (N,)."""
        generator = torch.Generator(device=values.device).manual_seed(seed)
        visits, per_anchor = mask.shape[1], max(draws, 1)
        candidates = torch.arange(visits, device=values.device).repeat_interleave(per_anchor)  # anchor of each
        imputed, anchors = [], []
        for part in torch.arange(len(values), device=values.device).split(chunk):
            n = len(part)
            v = values[part].repeat_interleave(len(candidates), 0)
            m = mask[part].repeat_interleave(len(candidates), 0)
            anchor = candidates.repeat(n)
            z_anchor, _ = self.encode(_gather(v, anchor), generator, mean_only=draws == 0)
            latents, _ = self.propagate(z_anchor, anchor)
            score = (self.visit_log_likelihoods(v, latents) * m).sum(1).view(n, len(candidates))
            score = score.masked_fill(~mask[part][:, candidates], -math.inf)
            best = score.argmax(1)
            chosen = latents.view(n, len(candidates), visits, -1)[torch.arange(n, device=values.device), best]
            imputed.append(self.decode(chosen))
            anchors.append(candidates[best])
        return torch.cat(imputed), torch.cat(anchors)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Means of p_θ(x|z) for latents (N, T, d) → (N, T, *input_shape)."""
        n, t = latents.shape[:2]
        return self.frame.decode(latents.reshape(n * t, -1)).view(n, t, *self.config.generator.input_shape)

    def _forward_from(self, z0: torch.Tensor) -> torch.Tensor:
        return self.decode(self.propagate(z0, torch.zeros(len(z0), dtype=torch.long, device=z0.device))[0])

    @torch.no_grad()
    def sample(self, n: int, *, seed: int, start: Sampler | None = None) -> torch.Tensor:
        """Fully synthetic sequences (n, T, *input_shape): z_0, then the flows (Fig. 6.5). z_0 is
        drawn from the prior p(z_0) (N(0, I), or the VAMP mixture), or from ``start``, a sampler
        fitted on the frame VAE (e.g. ``gmm`` on the first visits' codes: an ex-post density)."""
        if start is None:
            start = build_sampler("vamp" if self.config.generator.model == "vamp" else "prior").fit(self.frame)
        z0, _ = start.draw(n, seed=seed)
        return self._forward_from(z0.to(self._device))

    @torch.no_grad()
    def futures(self, baseline: torch.Tensor, draws: int, *, seed: int) -> torch.Tensor:
        """``draws`` plausible sequences per baseline image (N, draws, T, ...): z_0 ~ q_φ(·|x_0) (Fig. 6.4)."""
        generator = torch.Generator(device=self._device).manual_seed(seed)
        z0, _ = self.encode(baseline.repeat_interleave(draws, 0), generator)
        sequences = self._forward_from(z0)
        return sequences.view(len(baseline), draws, *sequences.shape[1:])

    @property
    def _device(self) -> torch.device:
        return next(self.parameters()).device


def per_visit_log_likelihood(frame: GenerativeModel, values: torch.Tensor, mask: torch.Tensor,
                             samples: int = 100, *, seed: int = 0) -> torch.Tensor:
    """Σ_{l observed} log p(x_l) of a per-visit VAE (visits independent), by importance sampling, (N,)."""
    per_visit = torch.zeros(mask.shape, device=values.device)
    per_visit[mask] = importance_log_likelihood(frame, values[mask], samples, seed=seed)
    return per_visit.sum(1)


@dataclass
class FlowTraining(Config):
    """Adam with the step schedule of App. 6.7.3; warm-up epochs train the frame as a VAE."""

    section: ClassVar[str] = 'training'

    epochs: int = 200
    warmup_epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 64
    milestones: tuple[int, ...] = (50, 100, 125, 150)
    gamma: float = 0.5
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        if self.epochs < 1 or self.warmup_epochs < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ConfigError("epochs ≥ 1, warmup_epochs ≥ 0, batch_size ≥ 1 and learning_rate > 0 are required")
        if self.gamma <= 0 or min(self.milestones, default=1) < 1:
            raise ConfigError("gamma must be > 0 and milestones ≥ 1")
        check_device(self.device, f"{self.section}.device")
        check_seed(self.seed, f"{self.section}.seed")


def train_flow_vae(model: LongitudinalFlowVAE, train: tuple[torch.Tensor, torch.Tensor],
                   validation: tuple[torch.Tensor, torch.Tensor], settings: FlowTraining, *,
                   checkpoint: str | os.PathLike | None = None,
                   images: str | None = None) -> tuple[LongitudinalFlowVAE, list[dict]]:
    """Train on (values (N, T, ...), mask (N, T)); keep the epoch with the lowest validation loss
    (Alg. 6 loss, fixed validation noise). With ``checkpoint`` the state is saved atomically after
    every epoch and an interrupted run resumes from it (:mod:`medaug.training`; a checkpoint of
    another model or other training settings, ``epochs`` and ``device`` aside, raises
    :class:`ConfigError`, and so does one of other ``images``, a fingerprint of the image files).
    ``warmup_epochs = epochs`` trains a plain per-visit VAE (the baseline of Table 6.1)."""
    for name, (_, observed) in (("training", train), ("validation", validation)):
        if not observed.any():
            raise InputDataError(f"the {name} set has no observed visit; it needs at least one subject")
    device = resolve_device(settings.device)
    model.to(device)
    train = tuple(t.to(device) for t in train)
    validation = tuple(t.to(device) for t in validation)
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)  # batch order, on the CPU
    # anchors and encoder noise are drawn on the data's device (the same stream on the CPU)
    noise = generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(settings.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(settings.milestones), settings.gamma)
    values, mask = train

    def warmup(epoch: int) -> bool:
        return epoch <= settings.warmup_epochs

    def batches(epoch: int):
        for index in torch.randperm(len(values), generator=generator).split(settings.batch_size):
            yield values[index], mask[index], warmup(epoch)

    def train_step(batch) -> torch.Tensor:
        v, m, warming_up = batch
        return model.warmup_loss(v, m) if warming_up else model.loss(v, m, noise)

    def validate(epoch: int) -> float:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(settings.seed)
            if warmup(epoch):
                return model.warmup_loss(*validation).item()
            return model.loss(*validation, torch.Generator(device=device).manual_seed(settings.seed)).item()

    hooks = Hooks(batches=batches, train_step=train_step, validate=validate,
                  # a warm-up loss is not the Alg. 6 loss: only flow epochs compete for the best model
                  selectable=lambda epoch: not warmup(epoch) or settings.warmup_epochs >= settings.epochs)
    result = TrainingLoop(model, optimizer, hooks, LoopConfig(max_epochs=settings.epochs, progress="longitudinal VAE"),
                          scheduler=scheduler, generators=[generator, noise], checkpoint=checkpoint,
                          settings={**_resume_settings(model, settings), "images": images}).run()
    return model.eval(), [{**row, "warmup": warmup(row["epoch"])} for row in result.log]


def _resume_settings(model: LongitudinalFlowVAE, settings: FlowTraining) -> dict:
    """What a checkpoint must match to be resumed (more epochs may be asked for, on another device)."""
    training = {k: v for k, v in settings.to_dict().items() if k not in ("epochs", "device")}
    return {"model": model.config.to_dict(), "training": training}
