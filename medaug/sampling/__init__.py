"""Samplers: draw latent codes (prior, ex-post GMM, geometry-aware HMC, ...) and decode them."""
