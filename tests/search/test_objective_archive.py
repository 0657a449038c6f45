"""Objective, acceptance, spaces and the archive, checked against naive numpy formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfair import attributes
from jaxfair.search import archive as arc
from jaxfair.search import objective as obj
from jaxfair.search import spaces

PROBS = {"tone": jnp.asarray([[0.05, 0.05, 0.9], [0.1, 0.6, 0.3], [0.0, 0.02, 0.98]]),
         "hair": jnp.asarray([[0.2, 0.8], [0.5, 0.5], [0.01, 0.99]]),
         "glasses": jnp.asarray([[0.5, 0.5], [0.9, 0.1], [0.3, 0.7]])}
TARGET = attributes.parse_target("tone=dark,hair=long", attributes.DEMO)


def test_loss_and_acceptance_match_numpy():
    masses = np.asarray(obj.target_masses(PROBS, TARGET, attributes.DEMO.names))
    np.testing.assert_allclose(masses, [[0.9, 0.8, 1], [0.3, 0.5, 1], [0.98, 0.99, 1]],
                               rtol=1e-6)
    np.testing.assert_allclose(obj.classifier_loss(jnp.asarray(masses)),
                               -np.log(masses).sum(-1), rtol=1e-5)
    ok = obj.accepted(obj.Objective(threshold=0.85), PROBS, TARGET)
    assert np.asarray(ok).tolist() == [False, False, True]
    ok = obj.accepted(obj.Objective(mode="argmax"), PROBS, TARGET)
    assert np.asarray(ok).tolist() == [True, False, True]


@pytest.mark.parametrize("kw", [{"threshold": 0.0}, {"threshold": 1.5}, {"mode": "best"},
                                {"prior_weight": -1.0}])
def test_bad_objective_settings(kw):
    with pytest.raises(ValueError):
        obj.Objective(**kw)


def test_spaces_shapes_prior_and_distance(tiny_G):
    prior = spaces.estimate_prior(tiny_G, jax.random.key(0), n=256)
    cfg = tiny_G.config
    for name, dim in (("z", 16), ("w", 16), ("wplus", cfg.num_ws * 16)):
        space = spaces.Space.create(name, cfg)
        assert space.dim == dim
        u = spaces.sample(space, tiny_G.graphdef, tiny_G.state, prior, jax.random.key(1), 64,
                          1.0)
        ws = spaces.to_ws(space, tiny_G.graphdef, tiny_G.state, prior, u, 1.0)
        assert u.shape == (64, dim) and ws.shape == (64, cfg.num_ws, 16)
        # Prior samples sit in the typical set: small prior loss, unit-ish coordinates.
        assert float(jnp.mean(spaces.prior_loss(space, u))) < 2.0
        if name != "z":  # w, wplus: the ws are the latents themselves
            lat = spaces.to_latent(space, prior, u)
            np.testing.assert_allclose(jnp.broadcast_to(
                lat.reshape(64, -1, 16), ws.shape), ws, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(jnp.mean(jnp.square(u)), 1.0, rtol=0.3)
    z = spaces.Space.create("z", cfg)
    a = jax.random.normal(jax.random.key(2), (3, 16))
    np.testing.assert_allclose(spaces.distance(z, a, 3.0 * a), 0.0, atol=1e-5)
    far = spaces.prior_loss(spaces.Space.create("w", cfg), jnp.full((1, 16), 3.0))
    assert float(spaces.prior_loss(spaces.Space.create("w", cfg), jnp.zeros((1, 16)))[0]) == 0
    assert float(far[0]) > 10


def _offer(a, space, u, ok, radius, gen=0):
    n = u.shape[0]
    return arc.insert(a, space, u, ok, jnp.ones((n, 3)), jnp.arange(n, dtype=jnp.float32),
                      jnp.int32(gen), radius)


def test_archive_rejects_near_duplicates_and_counts_overflow():
    space = spaces.Space("w", 4, 4, 2)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 4))
    u = np.concatenate([centres, centres + 0.01 * rng.normal(size=(6, 4))])  # 6 near copies
    ok = np.ones(12, bool)
    ok[2] = False  # not accepted: its near copy (row 8) becomes the first of its kind
    a = jax.jit(_offer, static_argnums=(1, 4))(arc.empty(8, 4, 3), space, jnp.asarray(u),
                                               jnp.asarray(ok), 0.1)
    assert int(a.count) == 6 and int(a.overflow) == 0 and int(a.duplicates) == 5
    stored = np.asarray(a.latents[:6])
    np.testing.assert_allclose(stored, u[[0, 1, 3, 4, 5, 8]], rtol=1e-6)  # batch order
    d = np.sqrt(((stored[:, None] - stored[None]) ** 2).mean(-1))
    assert np.all(d[~np.eye(6, dtype=bool)] > 0.1)
    # A second batch: duplicates of stored rows are refused, 5 new ones find 2 free rows.
    fresh = rng.normal(size=(5, 4)) * 3
    u2 = np.concatenate([u[:3] + 0.001, fresh])
    a = _offer(a, space, jnp.asarray(u2), jnp.ones(8, bool), 0.1, gen=1)
    assert int(a.count) == 8 and int(a.overflow) == 3 and int(a.duplicates) == 8
    np.testing.assert_allclose(a.latents[6:], fresh[:2], rtol=1e-6)
    assert np.asarray(a.generation).tolist() == [0] * 6 + [1, 1]
    stored = np.asarray(a.latents)
    d = np.sqrt(((stored[:, None] - stored[None]) ** 2).mean(-1))
    assert np.all(d[~np.eye(8, dtype=bool)] > 0.1)
