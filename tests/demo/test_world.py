"""Tests of the procedural demo world (jaxfair.demo.world) and its contact sheets."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfair.demo import (
    BIAS,
    BLEND_HALF_WIDTH,
    FACTORS,
    NUM_FACTORS,
    SCHEMA,
    THRESHOLDS,
    factors_from_normal,
    in_blend_zone,
    labels_from_factors,
    params_from_factors,
    render,
    sample,
    sample_factors,
)

SIZE = 64
BATCH = 256  # every rendered test batch has this shape, so the renderer compiles once
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _col(name: str) -> int:
    return FACTORS.index(name)


@pytest.fixture(scope="module")
def render_u():
    """Jitted u [BATCH, NUM_FACTORS] -> images [BATCH, SIZE, SIZE, 3]."""
    return jax.jit(lambda u: render(params_from_factors(u), SIZE))


@pytest.fixture(scope="module")
def many_u():
    return sample_factors(jax.random.PRNGKey(0), 20_000)


@pytest.fixture(scope="module")
def batch(render_u):
    u = sample_factors(jax.random.PRNGKey(1), BATCH)
    return u, np.asarray(render_u(u))


_params = jax.jit(params_from_factors)


def _face_frame(u, size: int = SIZE):
    """Pixel centres in each image's face frame, x, y [N, size, size] (mirrors the pose)."""
    p = _params(u)
    tx, ty, ang, sc = (np.asarray(getattr(p, k))[:, None, None]
                       for k in ("tx", "ty", "angle", "scale"))
    c = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    iy, ix = np.meshgrid(c, c, indexing="ij")
    dx, dy = (ix - tx) / sc, (iy - ty) / sc
    return np.cos(ang) * dx + np.sin(ang) * dy, -np.sin(ang) * dx + np.cos(ang) * dy


def _with(u, **values):
    """Copy of u with the named factor columns set to constants (numpy: no eager dispatch)."""
    u = np.array(u)
    for name, v in values.items():
        u[:, _col(name)] = v
    return u


def _masked_mean(lum, mask):
    return (lum * mask).sum((1, 2)) / mask.sum((1, 2))


# ------------------------------------------------------------------------------ constants ---

def test_schema_bias_and_factors_agree():
    assert tuple(SCHEMA) == tuple(BIAS) == FACTORS[:3]
    for name, classes in SCHEMA.items():
        assert len(BIAS[name]) == len(classes)
        assert sum(BIAS[name]) == pytest.approx(1.0)
        assert len(THRESHOLDS[name]) == len(classes) - 1
    assert THRESHOLDS["tone"] == pytest.approx((0.75, 0.93))
    assert NUM_FACTORS == len(FACTORS) == len(set(FACTORS))


# ---------------------------------------------------------------- shapes, keys, transforms ---

def test_shapes_dtype_and_range(batch):
    u, images = batch
    assert u.shape == (BATCH, NUM_FACTORS)
    assert images.shape == (BATCH, SIZE, SIZE, 3) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    # The full range is used: dark pupils and frames, bright sclera.
    assert images.min() < -0.8 and images.max() > 0.8


_TRACES = []


def _counted_sample(key, n, size):
    _TRACES.append((n, size))
    return sample(key, n, size)


@pytest.fixture(scope="module")
def sample_jit():
    return jax.jit(_counted_sample, static_argnames=("n", "size"))


def test_sample_shapes_small_size_and_odd_batch(sample_jit):
    images, labels = sample_jit(jax.random.PRNGKey(2), n=3, size=32)
    assert images.shape == (3, 32, 32, 3) and images.dtype == jnp.float32
    assert set(labels) == set(SCHEMA)
    for name, y in labels.items():
        assert y.shape == (3,) and y.dtype == jnp.int32
        assert int(y.min()) >= 0 and int(y.max()) < len(SCHEMA[name])


def test_deterministic_for_a_key_and_traced_once(sample_jit):
    a, la = sample_jit(jax.random.PRNGKey(7), n=3, size=32)
    b, lb = sample_jit(jax.random.PRNGKey(7), n=3, size=32)
    c, _ = sample_jit(jax.random.PRNGKey(8), n=3, size=32)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in SCHEMA:
        np.testing.assert_array_equal(np.asarray(la[name]), np.asarray(lb[name]))
    assert np.abs(np.asarray(a) - np.asarray(c)).mean() > 0.05
    # New keys reuse the compiled program.
    assert _TRACES.count((3, 32)) == 1


def _eager_one(u, i):
    """Item i of u rendered alone, without jit (op-by-op dispatch)."""
    return np.asarray(render(params_from_factors(u[i:i + 1]), SIZE))[0]


def test_jit_matches_eager(batch):
    u, images = batch
    np.testing.assert_allclose(_eager_one(u, 0), images[0], atol=1e-5)


def test_batch_equals_one_by_one(batch):
    u, images = batch
    # Eager single items share the op cache warmed by the test above (one face is cheap).
    for i in range(1, 4):
        np.testing.assert_allclose(_eager_one(u, i), images[i], atol=1e-5)


def test_vmap_over_an_extra_axis_and_chunk_remainder(batch):
    u, images = batch
    params = _params(u[:6])
    stacked = jax.tree_util.tree_map(lambda a: a.reshape((2, 3) + a.shape[1:]), params)
    # batch_size 2 over 3 faces: one scanned chunk plus a remainder, under an outer vmap.
    out = jax.jit(jax.vmap(lambda p: render(p, SIZE, batch_size=2)))(stacked)
    np.testing.assert_allclose(np.asarray(out).reshape(images[:6].shape), images[:6], atol=1e-5)


# ----------------------------------------------------------------------- labels and bias ---

def test_label_frequencies_match_bias(many_u):
    labels = labels_from_factors(many_u)
    for name, probs in BIAS.items():
        freq = np.bincount(np.asarray(labels[name]), minlength=len(probs)) / many_u.shape[0]
        np.testing.assert_allclose(freq, probs, atol=0.015, err_msg=name)


def test_attributes_independent(many_u):
    labels = {k: np.asarray(v) for k, v in labels_from_factors(many_u).items()}
    n = many_u.shape[0]
    marg = {k: np.bincount(v, minlength=len(SCHEMA[k])) / n for k, v in labels.items()}
    for cell in itertools.product(*(range(len(c)) for c in SCHEMA.values())):
        hit = np.ones(n, bool)
        expected = 1.0
        for (name, y), k in zip(labels.items(), cell, strict=True):
            hit &= y == k
            expected *= marg[name][k]
        assert abs(hit.mean() - expected) < 0.01, cell


def test_labels_are_hard_thresholds():
    u = jnp.full((6, NUM_FACTORS), 0.5).at[:, 0].set(
        jnp.array([0.1, 0.7499, 0.75, 0.9299, 0.93, 0.999]))
    np.testing.assert_array_equal(np.asarray(labels_from_factors(u)["tone"]), [0, 0, 1, 1, 2, 2])


def test_factors_from_normal_has_the_world_bias():
    z = np.random.default_rng(4).standard_normal((20_000, NUM_FACTORS)).astype(np.float32)
    z[0, 0], z[1, 0] = -40.0, 40.0  # extreme latents still give factors strictly inside (0, 1)
    u = np.asarray(factors_from_normal(z))
    assert u.min() > 0.0 and u.max() < 1.0
    hair = u[:, _col("hair")] >= THRESHOLDS["hair"][0]
    assert abs(hair.mean() - BIAS["hair"][1]) < 0.015


# ------------------------------------------------------------- smoothness at thresholds ---

def test_blend_zone_is_small_but_not_empty(many_u):
    frac = float(in_blend_zone(many_u).mean())
    assert 0.0 < frac < 0.01
    # Four thresholds, each 2 * BLEND_HALF_WIDTH wide: the expected fraction.
    assert frac == pytest.approx(8 * BLEND_HALF_WIDTH, abs=0.003)


def test_discrete_parameters_are_exact_outside_blend_zone(many_u):
    p = _params(many_u)
    labels = labels_from_factors(many_u)
    out = ~np.asarray(in_blend_zone(many_u))
    np.testing.assert_array_equal(np.asarray(p.hair_long)[out], np.asarray(labels["hair"])[out])
    np.testing.assert_array_equal(np.asarray(p.glasses)[out],
                                  np.asarray(labels["glasses"])[out])


@pytest.mark.parametrize("name,threshold", [("tone", 0.75), ("tone", 0.93), ("hair", 0.70),
                                            ("glasses", 0.80)])
def test_image_changes_continuously_across_threshold(name, threshold, render_u):
    h = BLEND_HALF_WIDTH
    u = np.repeat(np.asarray(sample_factors(jax.random.PRNGKey(5), 1)), BATCH, axis=0)
    u[:, _col(name)] = np.linspace(threshold - 1.5 * h, threshold + 1.5 * h, BATCH)
    images = np.asarray(render_u(u))
    jump = np.abs(np.diff(images, axis=0)).max()
    total = np.abs(images[-1] - images[0]).max()
    assert total > 0.5  # the attribute does change the picture...
    assert jump < 0.05 * total  # ...but gradually, never in one step


# -------------------------------------------------------------------- visible attributes ---

def test_tone_separable_by_face_centre_luminance(batch):
    u, images = batch
    x, y = _face_frame(u)
    # Mid-face strip between the nose and the mouth: below any lenses, above the lips.
    patch = (np.abs(x) <= 0.22) & (y >= 0.19) & (y <= 0.27)
    lum = _masked_mean(((images + 1) / 2) @ _LUMA, patch)
    tone = np.asarray(labels_from_factors(u)["tone"])
    keep = ~np.asarray(in_blend_zone(u))
    assert all(np.any(keep & (tone == k)) for k in range(3))
    lo = [lum[keep & (tone == k)].min() for k in range(3)]
    hi = [lum[keep & (tone == k)].max() for k in range(3)]
    assert lo[0] > hi[1] + 0.05, (lo, hi)  # light vs medium
    assert lo[1] > hi[2] + 0.05, (lo, hi)  # medium vs dark
    assert hi[0] - lo[0] > 0.03  # and there is variation within a class


def test_long_hair_fills_the_sides_of_the_jaw(batch, render_u):
    u, _ = batch
    short = np.asarray(render_u(_with(u, hair=0.2)))
    long_ = np.asarray(render_u(_with(u, hair=0.9)))
    short2 = np.asarray(render_u(_with(u, hair=0.2, hair_colour=0.95, hair_volume=0.99)))
    x, y = _face_frame(u)
    rx = np.asarray(_params(u).face_rx)[:, None, None]
    beside_jaw = (np.abs(x) > rx + 0.015) & (np.abs(x) < rx + 0.06) & (y > 0.2) & (y < 0.3)
    assert beside_jaw.sum((1, 2)).min() >= 4
    diff = _masked_mean(np.abs(long_ - short).mean(-1), beside_jaw)
    assert diff.min() > 0.1, diff.min()
    # Short hair leaves that region alone whatever its colour and volume.
    np.testing.assert_allclose(short2[beside_jaw], short[beside_jaw], atol=1e-6)


def test_glasses_darken_the_eye_region(batch, render_u):
    u, _ = batch
    bare = np.asarray(render_u(_with(u, glasses=0.1)))
    glasses = np.asarray(render_u(_with(u, glasses=0.95)))
    x, y = _face_frame(u)
    p = _params(u)
    ex, ey = (np.asarray(v)[:, None, None] for v in (p.eye_dx, p.eye_y + 0.05))
    eye_region = np.hypot(np.abs(x) - ex, y - ey) < 0.12
    drop = _masked_mean(((bare - glasses) / 2) @ _LUMA, eye_region)
    assert drop.min() > 0.05, drop.min()
    # Nothing changes far from the glasses (the midline between mouth and chin).
    far = (np.abs(x) < 0.06) & (y > 0.3) & (y < 0.45)
    np.testing.assert_allclose(bare[far], glasses[far], atol=1e-6)
