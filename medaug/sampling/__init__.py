"""Sampling a trained generator and writing what it draws.

``sampler`` (the API: ``fit`` then ``draw`` / ``sample``), ``samplers/`` (the registered samplers,
one module each), the chains they run (``hmc``, ``geodesics``, ``adaptation``, ``diagnostics``), the
geometric VAE's metric from posteriors (``posterior_metric``), ``two_stage``, ``posterior_check``
(refuses collapsed generators), ``pool`` (draw, write and score a pool: one path for ``medaug
generate`` and studies), ``synthetic_dataset`` (the BIDS derivative of synthetic images),
``quality`` (diversity, coverage, copies), ``interpolation`` and ``figure`` (2D latent spaces).
"""
