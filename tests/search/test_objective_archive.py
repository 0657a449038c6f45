"""Objective, acceptance, spaces and the archive, checked against naive numpy formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfair.judge import attributes
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


def _reference_archive(batches, radius, feature_radius, capacity):
    """The archive rule as a plain sequential loop: (stored rows, overflow, duplicates)."""
    def lat(a, b):
        return np.sqrt(np.mean((a - b) ** 2))

    def feat(a, b):
        return np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b))

    def near(i, j):
        return lat(i[0], j[0]) <= radius or feat(i[1], j[1]) <= feature_radius

    stored, overflow, duplicates = [], 0, 0
    for u, f, ok in batches:
        rows = list(zip(u, f))
        eligible = [bool(ok[i]) and not any(near(rows[i], s) for s in stored)
                    for i in range(len(rows))]
        for i, row in enumerate(rows):
            new = eligible[i] and not any(eligible[j] and near(row, rows[j]) for j in range(i))
            if not new:
                duplicates += bool(ok[i])
            elif len(stored) < capacity:
                stored.append(row)
            else:
                overflow += 1
    return stored, overflow, duplicates


def test_archive_feature_radius_matches_a_sequential_reference():
    # Latents and features fall in independent clusters, so some candidates are duplicates
    # only in latent space, some only in feature space, some in both.
    space = spaces.Space("w", 4, 4, 2)
    rng = np.random.default_rng(1)
    lat_c, feat_c = rng.normal(size=(6, 4)), np.abs(rng.normal(size=(12, 8)))
    radius, feature_radius, capacity = 0.1, 0.05, 10
    batches = []
    for _ in range(3):
        il, jf = rng.integers(0, 6, 12), rng.integers(0, 12, 12)
        # Half of the rows sit tightly on their cluster centre, half are spread out.
        u = lat_c[il] + np.where(rng.random((12, 1)) < 0.5, 0.02, 0.5) * rng.normal(
            size=(12, 4))
        f = feat_c[jf] * rng.uniform(0.5, 2.0, (12, 1)) + np.where(
            rng.random((12, 1)) < 0.5, 0.01, 0.5) * rng.random((12, 8))
        batches.append((u.astype(np.float32), f.astype(np.float32), rng.random(12) < 0.85))
    insert = jax.jit(arc.insert, static_argnums=(1, 7, 9))
    a = arc.empty(capacity, 4, 3, feature_dim=8)
    for g, (u, f, ok) in enumerate(batches):
        a = insert(a, space, jnp.asarray(u), jnp.asarray(ok), jnp.ones((12, 3)), jnp.zeros(12),
                   jnp.int32(g), radius, jnp.asarray(f), feature_radius)
    stored, overflow, duplicates = _reference_archive(batches, radius, feature_radius,
                                                      capacity)
    # Both kinds of duplicates occur, and the archive overflows: every branch is exercised.
    only_latent = _reference_archive(batches, radius, 0.0, 10 ** 6)[2]
    only_feature = _reference_archive(batches, 0.0, feature_radius, 10 ** 6)[2]
    assert 0 < only_latent < duplicates and 0 < only_feature < duplicates and overflow > 0
    assert (int(a.count), int(a.overflow), int(a.duplicates)) == (len(stored), overflow,
                                                                  duplicates)
    np.testing.assert_allclose(a.latents[:len(stored)], [s[0] for s in stored], rtol=1e-6)
    np.testing.assert_allclose(a.features[:len(stored)], [s[1] for s in stored], rtol=1e-6)
    # No stored pair is within either radius.
    lat = np.asarray(a.latents)
    d_lat = np.sqrt(((lat[:, None] - lat[None]) ** 2).mean(-1))
    d_feat = np.asarray(arc.feature_distance(a.features, a.features))
    off = ~np.eye(capacity, dtype=bool)
    assert np.all(d_lat[off] > radius) and np.all(d_feat[off] > feature_radius)


def test_feature_distance_is_the_chord_of_unit_vectors():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 16)), rng.normal(size=(3, 16))
    ref = np.linalg.norm((a / np.linalg.norm(a, axis=1, keepdims=True))[:, None]
                         - (b / np.linalg.norm(b, axis=1, keepdims=True))[None], axis=-1)
    np.testing.assert_allclose(arc.feature_distance(jnp.asarray(a), jnp.asarray(b)), ref,
                               atol=1e-5)
    # Scale-free: a and 3a are the same direction (0 up to float32's ~5e-4 floor).
    same = np.diag(np.asarray(arc.feature_distance(jnp.asarray(a), jnp.asarray(3 * a))))
    assert np.all(same < 1e-3)
