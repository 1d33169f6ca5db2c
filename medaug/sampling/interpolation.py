"""Decoded images along a geodesic between two images' codes, under a sampler's metric."""

from __future__ import annotations

import torch

from medaug.errors import ConfigError
from medaug.sampling.geodesics import curve_length, shortest_path
from medaug.sampling.sampler import Sampler, Samples


@torch.no_grad()
def interpolate(sampler: Sampler, x_start: torch.Tensor, x_end: torch.Tensor, points: int = 10,
                nodes: torch.Tensor | None = None) -> Samples:
    """Decoded images along the shortest path under the sampler's metric between the codes of two
    images (1, C, *spatial); graph nodes default to the metric's centroids."""
    if not hasattr(sampler, "metric_tensor"):
        raise ConfigError(f"the {sampler.name} sampler has no metric; use rhvae-hmc, random-walk or geometric")
    start, end = sampler.model.encoder(x_start)[0][0], sampler.model.encoder(x_end)[0][0]
    nodes = nodes if nodes is not None else sampler.metric.centroids
    curve = shortest_path(sampler.metric_tensor, start, end, nodes, points=points)
    return Samples(sampler.model.decode(curve), curve, {"riemannian_length": curve_length(sampler.metric_tensor, curve)})
