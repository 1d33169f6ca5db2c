"""Feature-mapping trajectory model (thesis ch. 5): features of each visit (from a trained VAE)
are mapped to a straight line in ℝᵈ,

    l_i(t) = exp(η_i)(t − τ_i) e₁ + Σ_{k≥2} λ_i^k e_k                         (Eq. 5.1)

with η, τ inferred by an Elman RNN over the observed sequence, λ by an MLP on the first visit,
and an MLP μ_θ back to feature space. Loss per subject (§5.2.2, Table 5.5 β = 0.1):

    Σ_{j observed} ‖x_ij − μ_θ(l_i(t_j))‖² + β Σ_{κ∈{η,τ,λ}} KL(q(κ|x_i) ‖ p(κ)),

priors η ~ N(0, σ_η²), τ ~ N(0, σ_τ²), λ ~ N(0, I). Missing visits are masked, never filled.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from torch import nn

from medaug.configuration import Config, check_seed
from medaug.errors import ConfigError
from medaug.longitudinal.sequences import Sequences, drop_visits
from medaug.training import Hooks, LoopConfig, TrainingLoop

logger = logging.getLogger(__name__)


def linear_trajectory(eta: torch.Tensor, tau: torch.Tensor, lam: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Eq. 5.1 for a batch: eta, tau (N,), lam (N, d−1), times (N, T) → points (N, T, d)."""
    along = (torch.exp(eta)[:, None] * (times - tau[:, None]))[..., None]
    return torch.cat([along, lam[:, None, :].expand(-1, times.shape[1], -1)], dim=-1)


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor, prior_std: float) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) ‖ N(0, prior_std²)) summed over the last dimension."""
    prior_var = prior_std ** 2
    return 0.5 * (torch.exp(log_var) / prior_var + mean ** 2 / prior_var - 1.0 - log_var
                  + np.log(prior_var)).sum(-1)


@dataclass
class TrajectoryConfig(Config):
    """Networks of Table 5.4 (ADNI column) and the priors / weighting of §5.2.2 and Table 5.5."""

    section: ClassVar[str] = 'trajectory model'

    feature_dim: int
    trajectory_dim: int = 8
    hidden: int = 512
    rnn_layers: int = 3
    sigma_eta: float = 1.0
    sigma_tau: float = 1.0
    beta: float = 0.1

    def validate(self) -> None:
        if self.feature_dim < 1 or self.trajectory_dim < 2 or self.hidden < 1 or self.rnn_layers < 1:
            raise ConfigError("feature_dim ≥ 1, trajectory_dim ≥ 2, hidden ≥ 1 and rnn_layers ≥ 1 are required")
        if min(self.sigma_eta, self.sigma_tau, self.beta) <= 0:
            raise ConfigError("sigma_eta, sigma_tau and beta must be > 0")


class FeatureTrajectoryModel(nn.Module):
    """q(η, τ | sequence) by an Elman RNN, q(λ | first visit) by an MLP, μ_θ by an MLP."""

    def __init__(self, config: TrajectoryConfig) -> None:
        super().__init__()
        self.config = config
        f, d, h = config.feature_dim, config.trajectory_dim, config.hidden
        # input per step: features × mask, time, mask (missing visits carry no feature values)
        self.rnn = nn.RNN(f + 2, h, num_layers=config.rnn_layers, nonlinearity="tanh", batch_first=True)
        self.time_head = nn.Sequential(nn.Linear(h, 128), nn.ReLU(), nn.Linear(128, 4))   # η, τ: mean, log-var
        self.space_head = nn.Sequential(nn.Linear(f + 1, h), nn.ReLU(), nn.Linear(h, 128), nn.ReLU(),
                                        nn.Linear(128, 2 * (d - 1)))
        self.to_features = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, f))

    def posterior(self, sequences: Sequences) -> dict[str, torch.Tensor]:
        """Means and log-variances of q(η), q(τ) (N,) and q(λ) (N, d−1)."""
        mask = sequences.mask.float()[..., None]
        steps = torch.cat([sequences.values * mask, sequences.times[..., None] * mask, mask], dim=-1)
        hidden, _ = self.rnn(steps)
        last = (sequences.mask.long().cumsum(1).argmax(1))  # index of the last observed visit
        summary = hidden[torch.arange(len(sequences)), last]
        eta_mean, eta_log_var, tau_mean, tau_log_var = self.time_head(summary).unbind(-1)
        first, first_time = sequences.first_visit()
        lam_mean, lam_log_var = self.space_head(torch.cat([first, first_time[:, None]], -1)).chunk(2, -1)
        return {"eta": (eta_mean, eta_log_var), "tau": (tau_mean, tau_log_var), "lam": (lam_mean, lam_log_var)}

    def decode(self, eta: torch.Tensor, tau: torch.Tensor, lam: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Features (N, T, f) along the trajectories at ``times`` (N, T)."""
        return self.to_features(linear_trajectory(eta, tau, lam, times))

    def loss(self, sequences: Sequences, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean over subjects of the masked reconstruction + β·KL of §5.2.2 (one posterior sample)."""
        post = self.posterior(sequences)
        draw = {k: m + torch.exp(0.5 * lv) * torch.randn(m.shape, generator=generator) for k, (m, lv) in post.items()}
        predicted = self.decode(draw["eta"], draw["tau"], draw["lam"], sequences.times)
        squared = ((predicted - sequences.values) ** 2).sum(-1) * sequences.mask
        kl = (gaussian_kl(post["eta"][0][:, None], post["eta"][1][:, None], self.config.sigma_eta)
              + gaussian_kl(post["tau"][0][:, None], post["tau"][1][:, None], self.config.sigma_tau)
              + gaussian_kl(*post["lam"], 1.0))
        return (squared.sum(1) + self.config.beta * kl).mean()

    @torch.no_grad()
    def predict(self, sequences: Sequences, times: torch.Tensor) -> torch.Tensor:
        """Posterior-mean trajectory features at ``times`` (N, T): imputation and extrapolation."""
        post = self.posterior(sequences)
        return self.decode(post["eta"][0], post["tau"][0], post["lam"][0], times)


@dataclass
class TrajectoryTraining(Config):
    """Optimisation of the trajectory model (Table 5.5: Adam, the best validation epoch kept)."""

    section: ClassVar[str] = "training"

    epochs: int = 200
    learning_rate: float = 1e-3
    batch_size: int = 32
    visit_dropout: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0 or not 0 <= self.visit_dropout < 1:
            raise ConfigError(f"{self.section}: epochs ≥ 1, batch_size ≥ 1, learning_rate > 0 and visit_dropout in "
                              "[0, 1) are required")
        check_seed(self.seed, f"{self.section}.seed")


def train_trajectory_model(model: FeatureTrajectoryModel, train: Sequences, validation: Sequences, *,
                           epochs: int = 200, learning_rate: float = 1e-3, batch_size: int = 32,
                           visit_dropout: float = 0.0, seed: int = 0,
                           checkpoint: str | os.PathLike | None = None,
                           inputs: dict | None = None) -> tuple[FeatureTrajectoryModel, list[dict]]:
    """Adam; keeps the epoch with the lowest validation loss (Table 5.5 caption). With
    ``visit_dropout`` each batch hides that fraction of follow-up visits at random, so that the
    encoder learns to infer trajectories from incomplete sequences (imputation). With
    ``checkpoint`` the state is saved after every epoch and an interrupted run resumes from it
    (:mod:`medaug.training`; more epochs may be asked for, other settings, and other ``inputs``
    (signatures of the images and feature extractor), are refused)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)

    def batches(epoch: int):
        for index in torch.randperm(len(train), generator=generator).split(batch_size):
            batch = _subset(train, index)
            if visit_dropout:
                batch = drop_visits(batch, visit_dropout, int(torch.randint(2**31, (1,), generator=generator)))[0]
            yield batch

    def validate(epoch: int) -> float:
        model.eval()
        with torch.no_grad():
            return model.loss(validation, torch.Generator().manual_seed(seed)).item()

    hooks = Hooks(batches=batches, train_step=lambda batch: model.loss(batch, generator), validate=validate)
    settings = {"model": model.config.to_dict(), "training": {"learning_rate": learning_rate, "batch_size": batch_size,
                                                               "visit_dropout": visit_dropout, "seed": seed},
                **({"inputs": inputs} if inputs else {})}
    result = TrainingLoop(model, optimizer, hooks, LoopConfig(max_epochs=epochs, progress="trajectory model"),
                          generators=[generator], checkpoint=checkpoint, settings=settings).run()
    return model.eval(), result.log


def _subset(sequences: Sequences, index: torch.Tensor) -> Sequences:
    chosen = [sequences.participants[i] for i in index.tolist()]
    return Sequences(chosen, sequences.values[index], sequences.times[index], sequences.mask[index],
                     sequences.rows[sequences.rows["participant_id"].isin(chosen)])


@dataclass
class TrajectorySampler:
    """Generation (§5.2.2): λ from a Gaussian mixture fitted on the training posterior means,
    η and τ from their priors; or a given subject's λ with prior η, τ (plausible futures)."""

    model: FeatureTrajectoryModel
    components: int = 5

    def fit(self, train: Sequences, seed: int = 0) -> TrajectorySampler:
        with torch.no_grad():
            return self.fit_codes(self.model.posterior(train)["lam"][0], seed)

    def fit_codes(self, lam: torch.Tensor, seed: int = 0) -> TrajectorySampler:
        """The mixture on given posterior means of λ (N, d−1), as saved with a fitted model."""
        lam = np.asarray(lam, dtype=np.float32)
        self.mixture = GaussianMixture(min(self.components, len(lam)), reg_covar=1e-4, random_state=seed).fit(lam)
        return self

    def _time_parameters(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.model.config
        return (config.sigma_eta * torch.randn(n, generator=generator),
                config.sigma_tau * torch.randn(n, generator=generator))

    @torch.no_grad()
    def new_subjects(self, n: int, times: torch.Tensor, seed: int) -> torch.Tensor:
        """Features (n, T, f) of fully synthetic subjects observed at ``times`` (T,) or per subject (n, T)."""
        generator = torch.Generator().manual_seed(seed)
        self.mixture.random_state = seed
        lam = torch.as_tensor(self.mixture.sample(n)[0], dtype=torch.float32)[torch.randperm(n, generator=generator)]
        eta, tau = self._time_parameters(n, generator)
        return self.model.decode(eta, tau, lam, times.expand(n, -1))

    @torch.no_grad()
    def futures(self, baseline: Sequences, draws: int, times: torch.Tensor, seed: int) -> torch.Tensor:
        """``draws`` plausible trajectories (N, draws, T, f) for each subject's first visit."""
        generator = torch.Generator().manual_seed(seed)
        lam = self.model.posterior(baseline)["lam"][0]
        n = len(baseline)
        eta, tau = self._time_parameters(n * draws, generator)
        features = self.model.decode(eta, tau, lam.repeat_interleave(draws, 0), times.expand(n * draws, -1))
        return features.view(n, draws, *features.shape[1:])
