"""Generative models (VAE, RHVAE), their training, persistence and likelihood estimates."""
