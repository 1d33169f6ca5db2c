"""Ex-post density estimation: a Gaussian mixture on the training posterior means."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from medaug.configuration import Config, check_at_least
from medaug.errors import ConfigError
from medaug.generative.models import GenerativeModel
from medaug.sampling.sampler import Sampler, posterior_means
from medaug.sampling.samplers import SAMPLERS


@dataclass
class GMMOptions(Config):
    section: ClassVar[str] = "gmm sampler options"

    n_components: int = 10

    def validate(self) -> None:
        check_at_least(self, n_components=1)


@SAMPLERS.register
class GMMSampler(Sampler):
    """Gaussian mixture (scikit-learn, full covariances) on the training posterior means."""

    name = "gmm"
    Options = GMMOptions

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the gmm sampler needs the training data to fit its mixture")
        self._fit_mixture(posterior_means(self.model, train_data))

    def fit_codes(self, model: GenerativeModel, codes: torch.Tensor) -> GMMSampler:
        """Fit on latent codes (n, d) computed beforehand (e.g. saved with a longitudinal model)."""
        self.model = model.eval()
        self._fit_mixture(torch.as_tensor(codes))
        return self

    def _fit_mixture(self, codes: torch.Tensor) -> None:
        from sklearn.mixture import GaussianMixture

        codes = codes.cpu().numpy().astype(np.float64)
        if len(codes) < 2:
            raise ConfigError(f"the gmm sampler needs at least 2 latent codes to fit its mixture, got {len(codes)}")
        components = min(self.options.n_components, len(codes))
        self.mixture = GaussianMixture(components, covariance_type="full", random_state=0).fit(codes)

    def _latents(self, n, generator):
        self.mixture.random_state = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
        codes, _ = self.mixture.sample(n)
        order = torch.randperm(n, generator=generator, device=generator.device)  # sklearn returns samples grouped by component
        return torch.as_tensor(codes, dtype=torch.float32, device=generator.device)[order], {}
