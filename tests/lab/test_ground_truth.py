"""Ground truth of demo latents: the exact inverse of the mapping layers and the projection."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxfair
from jaxfair.judge import attributes
from jaxfair.lab import ground_truth as gt
from jaxfair.models import stylegan2 as sg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def G():
    return jaxfair.load_generator(os.path.join(ROOT, "checkpoints", "demo", "generator"))


@pytest.fixture(scope="module")
def scale(G):
    w = G.mapping(jax.random.normal(jax.random.key(9), (2048, G.config.z_dim)))[:, 0]
    return np.asarray(jnp.std(w, axis=0))


def _layers_float64(G, x):
    """The mapping layers written out in numpy float64 (the formula, not the module)."""
    for i in range(G.config.mapping_layers):
        fc = G.state["mapping"][f"fc{i}"]
        w = np.asarray(fc["weight"][...], np.float64)
        y = x @ (w * G.config.mapping_lr_mul / math.sqrt(w.shape[0])) \
            + np.asarray(fc["bias"][...], np.float64) * G.config.mapping_lr_mul
        x = np.where(y >= 0, y, 0.2 * y) * math.sqrt(2.0)
    return x


def test_invert_layers_is_the_exact_inverse(G):
    z = np.asarray(jax.random.normal(jax.random.key(0), (64, G.config.z_dim)), np.float64)
    x = z / np.sqrt(np.mean(z * z, axis=1, keepdims=True))
    w = _layers_float64(G, x)
    # The written-out layers are the model's mapping ...
    np.testing.assert_allclose(w, np.asarray(G.mapping(z.astype(np.float32))[:, 0]),
                               rtol=1e-4, atol=1e-4)
    # ... and invert_layers undoes them (in float64 the inverse is exact).
    np.testing.assert_allclose(gt.invert_layers(G.config, G.state, w), x, atol=1e-7)


def test_projection_recovers_labels_on_the_surface_and_measures_the_distance(G, scale):
    check = gt.projection_check(G, jax.random.key(1), scale, n=256)
    # Tone and hair are what the distribution method and its acceptance numbers judge.
    assert check["tone"] >= 0.99 and check["hair"] >= 0.99, check
    z = jax.random.normal(jax.random.key(2), (256, G.config.z_dim))
    w = np.asarray(G.mapping(z)[:, 0])
    on = gt.project(G, w, scale, batch=256)
    assert np.median(on.residual) < 0.005, np.percentile(on.residual, [50, 95])
    np.testing.assert_allclose(np.sqrt(np.mean(on.z ** 2, axis=1)), 1.0, rtol=1e-4)
    # Same-size noise in every dimension of W mostly leaves the surface: it is measured.
    noisy = w + 0.3 * scale * np.asarray(jax.random.normal(jax.random.key(3), w.shape))
    off = gt.project(G, noisy, scale, batch=256)
    assert np.median(off.residual) > 0.1, np.percentile(off.residual, [50, 95])
    # Faces of w and of its projection: identical on the surface; a noisy w's face differs.
    assert float(np.max(gt.image_gap(G, w[:32], on.z[:32]))) < 0.01
    assert float(np.median(gt.image_gap(G, noisy[:32], off.z[:32]))) > 0.01


def test_in_group_and_labels_of_z():
    labels = {"tone": np.array([0, 2, 2]), "hair": np.array([1, 1, 0]),
              "glasses": np.array([0, 1, 0])}
    target = attributes.parse_target("tone=dark,hair=long", attributes.DEMO)
    np.testing.assert_array_equal(gt.in_group(labels, target), [False, True, False])
    z = np.asarray(jax.random.normal(jax.random.key(4), (8, 64)))
    got = gt.labels_of_z(z)
    assert set(got) == {"tone", "hair", "glasses"} and got["tone"].shape == (8,)
    # Only z's direction matters (the mapping normalises it first).
    for k, v in gt.labels_of_z(3.0 * z).items():
        np.testing.assert_array_equal(v, got[k])


def test_only_square_mappings_are_invertible(G):
    assert gt.is_demo_generator(G)
    cfg = sg.StyleGAN2Config.create(z_dim=32, w_dim=64, img_resolution=16, mapping_layers=2)
    with pytest.raises(ValueError, match="invertible only with square layers"):
        gt.check_invertible(cfg)
