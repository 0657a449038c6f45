"""Latent sampling: the render-and-classify step, and the distribution method (fit, draw,
hybrid search starts, evaluation)."""
