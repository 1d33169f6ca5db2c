"""The VAMP prior of a model trained with ``model: vamp``."""

from __future__ import annotations

import torch

from medaug.errors import ConfigError
from medaug.generative.models.vamp import VAMP
from medaug.sampling.sampler import Sampler
from medaug.sampling.samplers import SAMPLERS


@SAMPLERS.register
class VAMPSampler(Sampler):
    """z ~ 1/K Σₖ q_φ(z|uₖ): a pseudo-input drawn uniformly, then its posterior."""

    name = "vamp"
    models = ("vamp",)

    def _fit(self, train_data):
        if not isinstance(self.model, VAMP):
            raise ConfigError("the vamp sampler needs a model trained with model: vamp")

    def _latents(self, n, generator):
        mean, log_var = self.model.encoder(torch.sigmoid(self.model.pseudo_inputs))
        pick = torch.randint(len(mean), (n,), generator=generator, device=generator.device)
        noise = torch.randn(n, mean.shape[1], generator=generator, device=generator.device)
        return mean[pick] + (0.5 * log_var[pick]).exp() * noise, {}
