"""The registered samplers, one module each (``@SAMPLERS.register``); :func:`build_sampler` makes
one by name with validated options. The base API is :mod:`medaug.sampling.sampler`."""

from __future__ import annotations

from medaug.registry import Registry
from medaug.sampling.sampler import Sampler, Samples, posterior_means, posterior_parameters

SAMPLERS: Registry[type[Sampler]] = Registry("sampler", __name__)

__all__ = ["SAMPLERS", "Sampler", "Samples", "build_sampler", "posterior_means", "posterior_parameters"]


def build_sampler(name: str, **options) -> Sampler:
    """The sampler registered as ``name`` with its options (unknown keys and wrong types refused)."""
    return SAMPLERS.get(name, "sampler")(SAMPLERS.options(name, options, f"{name} sampler options"))
