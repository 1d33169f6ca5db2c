"""Copy control: the generator's posteriors of the training images, decoded."""

from __future__ import annotations

import torch

from medaug.errors import ConfigError
from medaug.sampling.sampler import Sampler, posterior_parameters
from medaug.sampling.samplers import SAMPLERS


@SAMPLERS.register
class PosteriorSampler(Sampler):
    """Copy control: z ~ q_φ(z|xᵢ) for training images xᵢ drawn uniformly, decoded.

    It re-samples the training set through the generator; an augmentation that does no better adds
    no new anatomy."""

    name = "posterior"

    def _fit(self, train_data):
        if train_data is None:
            raise ConfigError("the posterior sampler needs the training data to encode")
        self.means, self.log_vars = posterior_parameters(self.model, train_data)

    def _latents(self, n, generator):
        pick = torch.randint(len(self.means), (n,), generator=generator, device=generator.device)
        noise = torch.randn(n, self.means.shape[1], generator=generator, device=generator.device)
        return self.means[pick] + (0.5 * self.log_vars[pick]).exp() * noise, {}
