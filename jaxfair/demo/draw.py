"""Drawing the demo world's faces: signed-distance shapes composited back to front.

Faces are drawn with signed-distance functions (negative inside) composited back to front
with one-pixel antialiased edges, so the image is continuous in every parameter
(``face.FaceParams``); with the world's smooth blend steps, ``u -> image`` is smooth almost
everywhere.

Coordinates: ``x`` to the right, ``y`` downwards, the image spans [-1, 1] on both axes. Face
parts live in a face frame (the image frame after the inverse pose), head centre near (0, 0.05).

Example::

    key = jax.random.PRNGKey(0)
    images, labels = jax.jit(sample, static_argnums=(1, 2))(key, 16, 64)
    images.shape, labels["tone"].shape   # (16, 64, 64, 3), (16,)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxfair.demo.face import FaceParams, params_from_factors
from jaxfair.demo.world import labels_from_factors, sample_factors

# Fixed colours of the eyes and lips (RGB in [0, 1]).
_SCLERA = (0.96, 0.96, 0.95)
_PUPIL = (0.03, 0.03, 0.04)
_LIP = (0.72, 0.22, 0.26)


# --------------------------------------------------------------------------- SDF helpers ---

def _cover(d: jnp.ndarray, aa: jnp.ndarray) -> jnp.ndarray:
    """Coverage of a shape from its signed distance: a linear ramp one pixel (``aa``) wide."""
    return jnp.clip(0.5 - d / aa, 0.0, 1.0)


def _ellipse(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an axis-aligned ellipse (first-order, exact on the
    boundary's gradient, which is all the one-pixel antialiasing needs)."""
    px, py = (x - cx) / rx, (y - cy) / ry
    k0 = jnp.sqrt(px * px + py * py)
    k1 = jnp.sqrt((px / rx) ** 2 + (py / ry) ** 2)
    return k0 * (k0 - 1.0) / jnp.maximum(k1, 1e-6)


def _circle(x, y, cx, cy, r):
    return jnp.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r


def _capsule(x, y, ax, ay, bx, by, r):
    """Distance to the segment a-b, minus radius r."""
    pax, pay = x - ax, y - ay
    bax, bay = bx - ax, by - ay
    h = jnp.clip((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-12), 0.0, 1.0)
    return jnp.sqrt((pax - bax * h) ** 2 + (pay - bay * h) ** 2) - r


def _round_box(x, y, cx, cy, hx, hy, r):
    """Rounded rectangle centred at (cx, cy) with half-sizes (hx, hy) and corner radius r."""
    qx = jnp.abs(x - cx) - hx + r
    qy = jnp.abs(y - cy) - hy + r
    outside = jnp.sqrt(jnp.maximum(qx, 0.0) ** 2 + jnp.maximum(qy, 0.0) ** 2)
    return outside + jnp.minimum(jnp.maximum(qx, qy), 0.0) - r


def _over(img: jnp.ndarray, rgb: jnp.ndarray, alpha: jnp.ndarray) -> jnp.ndarray:
    """Composite a flat colour rgb [3] with coverage alpha [H, W] over img [H, W, 3]."""
    return img + (rgb - img) * alpha[..., None]


# ----------------------------------------------------------------------------- rendering ---

def _render_one(p: FaceParams, size: int) -> jnp.ndarray:
    """One face: ``p`` with scalar fields (colours [3]) -> [size, size, 3] in [0, 1]."""
    c = (jnp.arange(size, dtype=jnp.float32) + 0.5) * (2.0 / size) - 1.0
    iy, ix = jnp.meshgrid(c, c, indexing="ij")

    # Background gradient in the image frame.
    g = 0.5 + 0.5 * (ix * jnp.cos(p.bg_angle) + iy * jnp.sin(p.bg_angle)) / math.sqrt(2.0)
    img = p.bg_a + (p.bg_b - p.bg_a) * g[..., None]

    # Inverse pose: image frame -> face frame. Distances in the face frame are image
    # distances times 1/scale, so one pixel there is (2/size)/scale wide.
    ca, sa = jnp.cos(p.angle), jnp.sin(p.angle)
    dx, dy = (ix - p.tx) / p.scale, (iy - p.ty) / p.scale
    x = ca * dx + sa * dy
    y = -sa * dx + ca * dy
    aa = (2.0 / size) / p.scale

    cy = 0.05
    rx, ry = p.face_rx, p.face_ry

    # Shirt and neck.
    img = _over(img, p.shirt, _cover(_ellipse(x, y, 0.0, 1.42, 0.78, 0.55), aa))
    neck = _round_box(x, y, 0.0, cy + ry + 0.15, 0.16, 0.32, 0.06)
    img = _over(img, p.skin * 0.82, _cover(neck, aa))

    # Long hair: a curtain behind the head, from the crown down past the jaw on both sides.
    # A rounded crown (ellipse) over a straight fall with rounded ends.
    bottom = cy + ry * 0.45 + p.hair_length
    half_w = rx + 0.07 + 0.4 * p.hair_volume
    crown = _ellipse(x, y, 0.0, cy - 0.02, half_w, ry + 0.05 + p.hair_volume)
    fall = _round_box(x, y, 0.0, 0.5 * (cy + bottom), half_w, 0.5 * (bottom - cy), 0.09)
    curtain = jnp.minimum(crown, fall)
    img = _over(img, p.hair_rgb * 0.85, _cover(curtain, aa) * p.hair_long)

    # Ears, then the head: an ellipse whose half-width shrinks towards the chin (the jaw).
    img = _over(img, p.skin * 0.9, _cover(_ellipse(jnp.abs(x), y, rx, cy, 0.06, 0.1), aa))
    t_low = jnp.clip((y - cy) / ry, 0.0, 1.0)
    rx_y = rx * (1.0 - p.jaw * t_low * t_low)
    face = _ellipse(x, y, 0.0, cy, rx_y, ry)
    # Darken a band along the outline: a cheap hint of roundness.
    shade = 1.0 - 0.10 * jnp.clip(1.0 + face / 0.08, 0.0, 1.0)
    skin = p.skin * shade[..., None]
    img = img + (skin - img) * _cover(face, aa)[..., None]

    # Hair cap: a bigger ellipse over the head, cut by a hairline that curves down to the
    # temples and tilts with the parting.
    cap_shell = _ellipse(x, y, 0.0, cy - 0.02, rx + 0.04 + 0.3 * p.hair_volume,
                         ry + 0.03 + p.hair_volume)
    line = cy - p.hairline * ry + 0.9 * x * x + p.hair_part * x
    cap = jnp.maximum(cap_shell, y - line)
    img = _over(img, p.hair_rgb, _cover(cap, aa))

    # Eyes (mirrored with |x|): sclera, iris, pupil.
    ax = jnp.abs(x)
    ey = cy + p.eye_y
    img = _over(img, jnp.asarray(_SCLERA),
                _cover(_ellipse(ax, y, p.eye_dx, ey, 1.45 * p.eye_r, 0.9 * p.eye_r), aa))
    img = _over(img, p.iris, _cover(_circle(ax, y, p.eye_dx, ey, 0.8 * p.eye_r), aa))
    img = _over(img, jnp.asarray(_PUPIL), _cover(_circle(ax, y, p.eye_dx, ey, 0.38 * p.eye_r), aa))

    # Brows: capsules above the eyes; a positive angle raises the inner end.
    by = ey - 1.5 * p.eye_r - 0.028
    half = 0.065
    tilt = half * jnp.sin(p.brow_angle)
    brow = _capsule(ax, y, p.eye_dx - half, by - tilt, p.eye_dx + half, by + tilt,
                    0.5 * p.brow_thick)
    img = _over(img, p.hair_rgb * 0.7 + 0.02, _cover(brow, aa))

    # Nose: a faint ridge and a darker tip.
    nose_top, nose_tip = ey + 0.05, ey + p.nose_len
    ridge = _capsule(x, y, 0.012, nose_top, 0.02, nose_tip - 0.02, 0.010)
    img = _over(img, p.skin * 0.78, 0.6 * _cover(ridge, aa))
    tip = _ellipse(x, y, 0.0, nose_tip, 0.04, 0.018)
    img = _over(img, p.skin * 0.72, 0.7 * _cover(tip, aa))

    # Mouth: a thick parabolic arc; smile > 0 lifts the corners.
    my = (nose_tip + cy + ry) * 0.5 + 0.01
    xm = jnp.clip(x, -p.mouth_w, p.mouth_w)
    curve = my + p.smile * (1.0 - (xm / p.mouth_w) ** 2)
    slope = -2.0 * p.smile * xm / p.mouth_w**2
    d_mouth = jnp.sqrt((x - xm) ** 2 + ((y - curve) / jnp.sqrt(1.0 + slope**2)) ** 2) - 0.018
    lip = p.skin * 0.45 + jnp.asarray(_LIP) * 0.5
    img = _over(img, lip, _cover(d_mouth, aa))

    # Glasses: tinted lenses, two rings, a bridge and the temples to the sides of the head.
    lens = _circle(ax, y, p.eye_dx, ey, p.lens_r)
    img = _over(img, p.frame_rgb, 0.3 * p.glasses * _cover(lens, aa))
    ring = jnp.abs(lens) - 0.014
    bridge = _capsule(ax, y, 0.0, ey - 0.02, p.eye_dx - p.lens_r, ey - 0.01, 0.013)
    temple = _capsule(ax, y, p.eye_dx + p.lens_r, ey - 0.01, rx + 0.02, ey - 0.03, 0.012)
    frame = jnp.minimum(jnp.minimum(ring, bridge), temple)
    img = _over(img, p.frame_rgb, p.glasses * _cover(frame, aa))
    return img


def render(params: FaceParams, size: int = 64, batch_size: int = 64) -> jnp.ndarray:
    """Render faces: params with leading dim N -> images [N, size, size, 3] float32 in [-1, 1].

    ``size`` and ``batch_size`` are static (``jax.jit(render, static_argnames="size")``).
    Images are drawn ``batch_size`` at a time in a ``lax.map``: the loop boundary keeps XLA
    from fusing the per-image parameter maths (palettes, cosines) into the per-pixel loops,
    where it would be recomputed for every pixel, and a chunk's intermediates stay in cache.
    On CPU this is 2-8x faster than one vmap over the whole batch; the result is the same.
    """
    def one(p: FaceParams) -> jnp.ndarray:
        return jnp.clip(_render_one(p, size), 0.0, 1.0) * 2.0 - 1.0

    return jax.lax.map(one, params, batch_size=batch_size)


def sample(key: jax.Array, n: int, size: int = 64
           ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Draw n faces of the world: (images [n, size, size, 3] in [-1, 1], labels {attr: [n]})."""
    u = sample_factors(key, n)
    return render(params_from_factors(u), size), labels_from_factors(u)
