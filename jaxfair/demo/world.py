"""The demo world: a procedural, deliberately biased distribution of cartoon faces.

A small honest miniature of the real problem. Every image is a pure function of a vector of
independent uniform factors ``u`` in (0, 1); three of them carry the demo schema (skin tone,
hair length, glasses) by thresholds placed to give the world its bias, and their hard
thresholds are the ground-truth labels. A StyleGAN2 trained on these images inherits the bias;
a classifier trained on the labels scores the generator's output.

Faces are drawn with signed-distance functions (negative inside) composited back to front
with one-pixel antialiased edges, so the image is continuous in every parameter. The discrete
attributes switch through a steep but C2-smooth step of half-width ``BLEND_HALF_WIDTH``
around each threshold, so ``u -> image`` is smooth almost everywhere (a generator can learn it
from a latent) while fewer than 1 % of factor vectors fall where the picture is a blend.

Coordinates: ``x`` to the right, ``y`` downwards, the image spans [-1, 1] on both axes. Face
parts live in a face frame (the image frame after the inverse pose), head centre near (0, 0.05).

Example::

    key = jax.random.PRNGKey(0)
    images, labels = jax.jit(sample, static_argnums=(1, 2))(key, 16, 64)
    images.shape, labels["tone"].shape   # (16, 64, 64, 3), (16,)
"""

from __future__ import annotations

import math
import types

import flax
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

# ------------------------------------------------------------------------------- palettes ---

# Skin base colours (linear-ish sRGB in [0, 1]) per tone class. Their luminances (about 0.83,
# 0.58, 0.30) stay far apart even after the within-class shade of +-7 %, so tone is readable
# from any patch of cheek.
_SKIN = ((0.97, 0.82, 0.72), (0.80, 0.57, 0.40), (0.44, 0.29, 0.20))
_SKIN_WARM = (0.03, 0.0, -0.03)  # RGB shift at full warmth (undertone, symmetric about 0)

# Hair colour path: black, dark brown, chestnut, auburn, dark blonde, blonde.
_HAIR = ((0.06, 0.05, 0.05), (0.20, 0.12, 0.07), (0.38, 0.22, 0.11),
         (0.55, 0.24, 0.10), (0.70, 0.55, 0.30), (0.90, 0.77, 0.47))
# Iris path: dark brown, brown, hazel, green, grey, blue.
_IRIS = ((0.18, 0.10, 0.05), (0.36, 0.21, 0.09), (0.48, 0.40, 0.15),
         (0.25, 0.48, 0.25), (0.45, 0.52, 0.58), (0.22, 0.45, 0.78))

_SCLERA = (0.96, 0.96, 0.95)
_PUPIL = (0.03, 0.03, 0.04)
_LIP = (0.72, 0.22, 0.26)


# ----------------------------------------------------------------------------- parameters ---

@flax.struct.dataclass
class FaceParams:
    """Per-image render parameters; every field has leading dimension N.

    Scalars are [N], colours are [N, 3] RGB in [0, 1]. Lengths are in face-frame units (the
    image is 2 units wide). ``hair_long`` and ``glasses`` are in [0, 1]: exactly 0 or 1 except
    inside the blend zones.
    """

    # Pose: the face frame is the image frame scaled by ``scale``, rotated by ``angle``
    # (radians, clockwise on screen since y points down) and shifted by (tx, ty).
    tx: jnp.ndarray
    ty: jnp.ndarray
    angle: jnp.ndarray
    scale: jnp.ndarray
    # Head.
    face_rx: jnp.ndarray
    face_ry: jnp.ndarray
    jaw: jnp.ndarray
    skin: jnp.ndarray
    # Hair.
    hair_rgb: jnp.ndarray
    hair_long: jnp.ndarray
    hair_volume: jnp.ndarray
    hair_length: jnp.ndarray
    hairline: jnp.ndarray
    hair_part: jnp.ndarray
    # Eyes and brows.
    eye_r: jnp.ndarray
    eye_dx: jnp.ndarray
    eye_y: jnp.ndarray
    iris: jnp.ndarray
    brow_thick: jnp.ndarray
    brow_angle: jnp.ndarray
    # Nose and mouth.
    nose_len: jnp.ndarray
    mouth_w: jnp.ndarray
    smile: jnp.ndarray
    # Glasses.
    glasses: jnp.ndarray
    lens_r: jnp.ndarray
    frame_rgb: jnp.ndarray
    # Scene.
    bg_a: jnp.ndarray
    bg_b: jnp.ndarray
    bg_angle: jnp.ndarray
    shirt: jnp.ndarray


def _lerp(a, b, t):
    return a + (b - a) * t


def _smooth_step(u: jnp.ndarray, threshold: float, half_width: float) -> jnp.ndarray:
    """0 below ``threshold - half_width``, 1 above ``threshold + half_width``, C2 between.

    Quintic smootherstep rather than a logistic: outside the zone the value is exactly 0 or
    1, so images there match their labels exactly and the blend zone has a precise size.
    """
    t = jnp.clip((u - threshold + half_width) / (2.0 * half_width), 0.0, 1.0)
    return t * t * t * (t * (6.0 * t - 15.0) + 10.0)


def _palette_path(t: jnp.ndarray, colours) -> jnp.ndarray:
    """Piecewise-linear walk along a list of colours: t [N] in [0, 1] -> [N, 3]."""
    c = jnp.asarray(colours, jnp.float32)
    knots = jnp.linspace(0.0, 1.0, c.shape[0])
    return jnp.stack([jnp.interp(t, knots, c[:, k]) for k in range(3)], axis=-1)


def _cosine_rgb(hue: jnp.ndarray, light: jnp.ndarray, sat: float) -> jnp.ndarray:
    """Smooth hue wheel: hue [N] (period 1; 0 red, 1/3 green, 2/3 blue) -> [N, 3] in [0, 1]."""
    phase = hue[:, None] - jnp.asarray([0.0, 1.0 / 3.0, 2.0 / 3.0])
    return jnp.clip(light[:, None] + sat * 0.5 * jnp.cos(2.0 * math.pi * phase), 0.0, 1.0)


def _discrete_steps(u: jnp.ndarray, name: str) -> list[jnp.ndarray]:
    """Smooth steps of the factor of attribute ``name``, one per threshold: each [N]."""
    col = u[:, _F[name]]
    return [_smooth_step(col, t, BLEND_HALF_WIDTH) for t in THRESHOLDS[name]]


def params_from_factors(u: jnp.ndarray) -> FaceParams:
    """Map factors u [N, NUM_FACTORS] in (0, 1) to render parameters.

    Every parameter is a continuous (piecewise smooth) function of ``u``; the discrete
    attributes change only inside their blend zones (see ``in_blend_zone``).
    """
    u = jnp.asarray(u, jnp.float32)
    f = {name: u[:, i] for i, name in enumerate(FACTORS)}

    # Skin: soft class weights -> base colour, then the within-class shade and undertone.
    s_med, s_dark = _discrete_steps(u, "tone")
    skin_base = jnp.asarray(_SKIN, jnp.float32)
    w = jnp.stack([1.0 - s_med, s_med - s_dark, s_dark], axis=-1)
    skin = w @ skin_base
    skin = skin * _lerp(0.93, 1.07, f["skin_shade"])[:, None]
    skin = skin + (2.0 * f["skin_warmth"] - 1.0)[:, None] * jnp.asarray(_SKIN_WARM)
    skin = jnp.clip(skin, 0.0, 1.0)

    hair_rgb = _palette_path(f["hair_colour"], _HAIR) * _lerp(0.75, 1.1, f["hair_shade"])[:, None]

    # Background hues stay in green..violet, never hair- or skin-coloured, so long hair
    # always shows against the background beside the jaw.
    bg_hue = _lerp(0.30, 0.78, f["bg_hue"])
    bg_light = _lerp(0.50, 0.82, f["bg_lightness"])
    bg_a = _cosine_rgb(bg_hue, bg_light, 0.35)
    grad = _lerp(0.0, 0.25, f["bg_gradient"])
    bg_b = _cosine_rgb(bg_hue + 0.06, bg_light - grad, 0.35)

    face_ry = _lerp(0.46, 0.56, f["face_height"])
    return FaceParams(
        tx=_lerp(-0.08, 0.08, f["shift_x"]),
        ty=_lerp(-0.06, 0.06, f["shift_y"]),
        angle=_lerp(-0.14, 0.14, f["rotation"]),
        scale=_lerp(0.90, 1.08, f["scale"]),
        face_rx=_lerp(0.34, 0.43, f["face_width"]),
        face_ry=face_ry,
        jaw=_lerp(0.05, 0.35, f["jaw"]),
        skin=skin,
        hair_rgb=jnp.clip(hair_rgb, 0.0, 1.0),
        hair_long=_discrete_steps(u, "hair")[0],
        hair_volume=_lerp(0.03, 0.12, f["hair_volume"]),
        hair_length=_lerp(0.12, 0.35, f["hair_length"]),
        hairline=_lerp(0.38, 0.58, f["hairline"]),
        hair_part=_lerp(-0.12, 0.12, f["hair_part"]),
        eye_r=_lerp(0.045, 0.065, f["eye_size"]),
        eye_dx=_lerp(0.13, 0.17, f["eye_spacing"]),
        eye_y=_lerp(-0.08, 0.0, f["eye_height"]),
        iris=_palette_path(f["iris_colour"], _IRIS),
        brow_thick=_lerp(0.014, 0.034, f["brow_thickness"]),
        brow_angle=_lerp(-0.35, 0.35, f["brow_angle"]),
        nose_len=_lerp(0.10, 0.17, f["nose_length"]),
        mouth_w=_lerp(0.07, 0.13, f["mouth_width"]),
        smile=_lerp(-0.015, 0.05, f["smile"]),
        glasses=_discrete_steps(u, "glasses")[0],
        lens_r=_lerp(0.085, 0.11, f["lens_size"]),
        frame_rgb=_cosine_rgb(f["frame_colour"], jnp.full_like(f["frame_colour"], 0.12), 0.12),
        bg_a=bg_a,
        bg_b=bg_b,
        bg_angle=_lerp(-math.pi, math.pi, f["bg_angle"]),
        shirt=_cosine_rgb(f["shirt_hue"], jnp.full_like(f["shirt_hue"], 0.45), 0.45),
    )


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
