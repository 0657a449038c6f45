"""Latent sampling of the main job (the shared prior stream, gated sampling)."""
