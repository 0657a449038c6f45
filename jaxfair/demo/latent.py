"""The demo generator's latent, as the demo world sees it: the exact ground truth of its faces.

The demo generator is trained (``fit_generator``) to draw, for a latent z, the world's face
of factors ``factors_from_latent(z)``: z projected on its sphere (as the mapping network
sees it), each of the first ``NUM_FACTORS`` coordinates mapped to (0, 1) by the CDF of a
coordinate of a uniform point on that sphere, so prior latents give independent uniform
factors. Reports use it to judge datasets of the demo generator against the truth.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import betainc

from jaxfair.demo import world
from jaxfair.models import stylegan2_ops as ops


def factors_from_latent(z: jnp.ndarray) -> jnp.ndarray:
    """z [N, z_dim] (z_dim > NUM_FACTORS) -> uniform world factors [N, NUM_FACTORS]."""
    d = z.shape[-1]
    if d <= world.NUM_FACTORS:
        raise ValueError(f"z_dim must exceed the world's {world.NUM_FACTORS} factors, got {d}")
    t = ops.normalize_2nd_moment(z)[:, :world.NUM_FACTORS] / jnp.sqrt(d)  # in [-1, 1]
    a = (d - 1) / 2.0
    u = betainc(a, a, jnp.clip((1.0 + t) / 2.0, 0.0, 1.0))
    return jnp.clip(u, 1e-6, 1 - 1e-6)


def labels_from_latent(z: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """Ground-truth demo labels of the faces the generator was trained to draw for z."""
    return world.labels_from_factors(factors_from_latent(z))
