"""Generative models and their training.

``config`` (the common settings and the model registry), ``models/`` (VAE, RHVAE, VAMP, RAEs: one
module each, with its own options), the RHVAE's ``metric`` and ``leapfrog``, ``densities``,
``likelihood`` (importance-sampled log p(x)), ``trainer`` (the generator training loop),
``training_data`` (one diagnosis's images, split at subject level) and ``persistence`` (model folders).
"""
