"""log p(x) by importance sampling (thesis Table 1.1): log (1/S) Σₛ p̂ₛ(x), batched over data points."""

from __future__ import annotations

import math

import torch

from medaug.generative.models import GenerativeModel


def importance_log_likelihood(model: GenerativeModel, x: torch.Tensor, samples: int = 100, *,
                              chunk: int = 1000, seed: int = 0) -> torch.Tensor:
    """Per data point, log of the mean of ``samples`` unbiased estimates p̂ (log-sum-exp), (B,).

    The B × S estimates are computed in chunks of ``chunk`` rows (each row one (x, sample) pair).
    """
    generator = torch.Generator(device=x.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    repeated = x.repeat_interleave(samples, dim=0)
    with torch.no_grad():
        weights = torch.cat([model.log_weights(part, generator) for part in repeated.split(chunk)])
    model.train(was_training)
    return torch.logsumexp(weights.view(len(x), samples), dim=1) - math.log(samples)
