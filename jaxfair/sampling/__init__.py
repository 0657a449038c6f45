"""Latent sampling: unguided images from a generator (and, later, per-group samplers)."""
