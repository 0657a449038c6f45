"""The demo world: a procedural, deliberately biased distribution of cartoon faces.

A small honest miniature of the real problem. Every image is a pure function of a vector of
independent uniform factors ``u`` in (0, 1); three of them carry the demo schema (skin tone,
hair length, glasses) by thresholds placed to give the world its bias, and their hard
thresholds are the ground-truth labels. A StyleGAN2 trained on these images inherits the bias;
a classifier trained on the labels scores the generator's output.

This module is the world's distribution and its exact labels; ``face`` maps factors to a
face's parameters and ``draw`` renders them. The discrete attributes switch through a steep
but C2-smooth step of half-width ``BLEND_HALF_WIDTH`` around each threshold, so
``u -> image`` is smooth almost everywhere (a generator can learn it from a latent) while
fewer than 1 % of factor vectors fall where the picture is a blend.

Example::

    u = sample_factors(jax.random.PRNGKey(0), 16)   # [16, NUM_FACTORS] in (0, 1)
    labels = labels_from_factors(u)                 # {"tone": [16], "hair": ..., ...}
    images, labels = draw.sample(key, 16, 64)       # the faces too: (16, 64, 64, 3)
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

# --------------------------------------------------------------------------------- schema ---

SCHEMA = types.MappingProxyType({
    "tone": ("light", "medium", "dark"),
    "hair": ("short", "long"),
    "glasses": ("no", "yes"),
})
"""Attribute -> class names, in label order (read-only mapping)."""

BIAS = types.MappingProxyType({
    "tone": (0.75, 0.18, 0.07),
    "hair": (0.70, 0.30),
    "glasses": (0.80, 0.20),
})
"""Attribute -> class probabilities of the world; the attributes are independent."""

FACTORS = (
    # Discrete attributes, one factor each (same names and order as SCHEMA).
    "tone", "hair", "glasses",
    # Skin: lightness and warmth within the tone class.
    "skin_shade", "skin_warmth",
    # Hair: colour along a black..blonde path, lightness, cap volume, long-hair length,
    # hairline height, parting tilt.
    "hair_colour", "hair_shade", "hair_volume", "hair_length", "hairline", "hair_part",
    # Head shape.
    "face_width", "face_height", "jaw",
    # Eyes, brows, nose, mouth.
    "eye_size", "eye_spacing", "eye_height", "iris_colour",
    "brow_thickness", "brow_angle",
    "nose_length",
    "mouth_width", "smile",
    # Glasses (visible only when the glasses attribute is on).
    "lens_size", "frame_colour",
    # Background (hue, lightness, gradient direction and strength) and shirt.
    "bg_hue", "bg_lightness", "bg_angle", "bg_gradient", "shirt_hue",
    # Pose jitter.
    "shift_x", "shift_y", "rotation", "scale",
)
"""Names of the factor columns of ``u``, in order."""

NUM_FACTORS = len(FACTORS)
_F = {name: i for i, name in enumerate(FACTORS)}

BLEND_HALF_WIDTH = 1e-3
"""Half-width, in factor units, of the smooth step at each class threshold. There are four
thresholds (two for tone), so at most 4 * 2 * 1e-3 = 0.8 % of factor vectors are blends."""


def _thresholds(probs: tuple[float, ...]) -> tuple[float, ...]:
    """Inner cumulative probabilities: the factor thresholds between consecutive classes."""
    cum = 0.0
    out = []
    for p in probs[:-1]:
        cum += p
        out.append(cum)
    return tuple(out)


THRESHOLDS = types.MappingProxyType({name: _thresholds(p) for name, p in BIAS.items()})
"""Attribute -> factor thresholds (class k is ``t[k-1] <= u < t[k]``)."""


def smooth_step(u: jnp.ndarray, threshold: float, half_width: float) -> jnp.ndarray:
    """0 below ``threshold - half_width``, 1 above ``threshold + half_width``, C2 between.

    Quintic smootherstep rather than a logistic: outside the zone the value is exactly 0 or
    1, so images there match their labels exactly and the blend zone has a precise size.
    """
    t = jnp.clip((u - threshold + half_width) / (2.0 * half_width), 0.0, 1.0)
    return t * t * t * (t * (6.0 * t - 15.0) + 10.0)


def discrete_steps(u: jnp.ndarray, name: str) -> list[jnp.ndarray]:
    """Smooth steps of the factor of attribute ``name``, one per threshold: each [N]."""
    col = u[:, _F[name]]
    return [smooth_step(col, t, BLEND_HALF_WIDTH) for t in THRESHOLDS[name]]


def labels_from_factors(u: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """Ground-truth labels: attribute -> int32 class index [N], by the hard thresholds."""
    u = jnp.asarray(u, jnp.float32)
    out = {}
    for name, ts in THRESHOLDS.items():
        col = u[:, _F[name]]
        out[name] = sum((col >= t).astype(jnp.int32) for t in ts)
    return out


def in_blend_zone(u: jnp.ndarray) -> jnp.ndarray:
    """bool [N]: some discrete factor lies inside a smooth step, so its image is a blend."""
    u = jnp.asarray(u, jnp.float32)
    hit = jnp.zeros(u.shape[0], bool)
    for name, ts in THRESHOLDS.items():
        col = u[:, _F[name]]
        for t in ts:
            hit = hit | (jnp.abs(col - t) < BLEND_HALF_WIDTH)
    return hit


def sample_factors(key: jax.Array, n: int) -> jnp.ndarray:
    """Independent uniform factors [n, NUM_FACTORS], strictly inside (0, 1)."""
    return jax.random.uniform(key, (n, NUM_FACTORS), jnp.float32, minval=1e-6, maxval=1 - 1e-6)


def factors_from_normal(z: jnp.ndarray) -> jnp.ndarray:
    """Gaussian latents z [N, NUM_FACTORS] -> factors (the normal CDF, elementwise).

    With ``z ~ N(0, I)`` the result has exactly the distribution of ``sample_factors``; a
    generator conditioned on a Gaussian latent can be taught ``render(params(ndtr(z)))``.
    """
    return jnp.clip(ndtr(jnp.asarray(z, jnp.float32)), 1e-6, 1 - 1e-6)
