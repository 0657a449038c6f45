"""The parameters of one cartoon face of the demo world, as smooth functions of its factors.

``params_from_factors`` maps factors ``u`` [N, NUM_FACTORS] (``world``) to ``FaceParams``:
pose, head shape, skin, hair, eyes, brows, nose, mouth, glasses and scene, each a
continuous (piecewise smooth) function of ``u``; the discrete attributes change only inside
their blend zones (``world.in_blend_zone``). ``draw`` renders the parameters.

Example::

    p = params_from_factors(world.sample_factors(key, 8))
    p.skin.shape, p.glasses.shape   # (8, 3), (8,)
"""

from __future__ import annotations

import math

import flax
import jax.numpy as jnp

from jaxfair.demo.world import FACTORS, discrete_steps

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


def _palette_path(t: jnp.ndarray, colours) -> jnp.ndarray:
    """Piecewise-linear walk along a list of colours: t [N] in [0, 1] -> [N, 3]."""
    c = jnp.asarray(colours, jnp.float32)
    knots = jnp.linspace(0.0, 1.0, c.shape[0])
    return jnp.stack([jnp.interp(t, knots, c[:, k]) for k in range(3)], axis=-1)


def _cosine_rgb(hue: jnp.ndarray, light: jnp.ndarray, sat: float) -> jnp.ndarray:
    """Smooth hue wheel: hue [N] (period 1; 0 red, 1/3 green, 2/3 blue) -> [N, 3] in [0, 1]."""
    phase = hue[:, None] - jnp.asarray([0.0, 1.0 / 3.0, 2.0 / 3.0])
    return jnp.clip(light[:, None] + sat * 0.5 * jnp.cos(2.0 * math.pi * phase), 0.0, 1.0)


def params_from_factors(u: jnp.ndarray) -> FaceParams:
    """Map factors u [N, NUM_FACTORS] in (0, 1) to render parameters.

    Every parameter is a continuous (piecewise smooth) function of ``u``; the discrete
    attributes change only inside their blend zones (see ``in_blend_zone``).
    """
    u = jnp.asarray(u, jnp.float32)
    f = {name: u[:, i] for i, name in enumerate(FACTORS)}

    # Skin: soft class weights -> base colour, then the within-class shade and undertone.
    s_med, s_dark = discrete_steps(u, "tone")
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
        hair_long=discrete_steps(u, "hair")[0],
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
        glasses=discrete_steps(u, "glasses")[0],
        lens_r=_lerp(0.085, 0.11, f["lens_size"]),
        frame_rgb=_cosine_rgb(f["frame_colour"], jnp.full_like(f["frame_colour"], 0.12), 0.12),
        bg_a=bg_a,
        bg_b=bg_b,
        bg_angle=_lerp(-math.pi, math.pi, f["bg_angle"]),
        shirt=_cosine_rgb(f["shirt_hue"], jnp.full_like(f["shirt_hue"], 0.45), 0.45),
    )
