"""Variations along W directions: file checks, the move, filtering, direction fitting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfair.judge import attributes
from jaxfair.pipeline import variations as var
from jaxfair.search import objective as obj
from jaxfair.search import spaces

W_DIM = 4
PRIOR = spaces.Prior(jnp.zeros(W_DIM), jnp.float32(0.5))


def directions(scales=(1.0, 0.5)):
    vec = np.eye(W_DIM, dtype=np.float32)[:len(scales)]
    return var.Directions(("a", "b")[:len(scales)], vec, np.asarray(scales, np.float32))


def test_file_round_trip_and_width_check(tmp_path):
    path = str(tmp_path / "d.npz")
    var.save(path, directions())
    d = var.load(path, W_DIM)
    assert d.names == ("a", "b") and d.vectors.shape == (2, W_DIM)
    with pytest.raises(ValueError, match="latent width 4 does not match the generator's w_dim 8"):
        var.load(path, 8)
    with pytest.raises(ValueError, match="cannot read directions file"):
        var.load(str(tmp_path / "missing.npz"), W_DIM)
    np.savez(str(tmp_path / "bad.npz"), names=np.array(["a"]), directions=np.ones((1, W_DIM)),
             scales=np.ones(1))
    with pytest.raises(ValueError, match="unit vectors"):
        var.load(str(tmp_path / "bad.npz"), W_DIM)


def test_candidates_move_only_along_the_directions_within_scale():
    ws = np.ones((3, 2, W_DIM), np.float32)
    c = var.candidates(directions(), PRIOR, ws, 5, jax.random.key(0))
    assert c.shape == (3, 5, 2, W_DIM)
    delta = c - ws[:, None]
    np.testing.assert_array_equal(delta[..., 0, :], delta[..., 1, :])  # every layer moves
    length = 0.5 * np.sqrt(W_DIM)
    assert np.all(np.abs(delta[..., 0]) <= length * 1.0 + 1e-6)
    assert np.all(np.abs(delta[..., 1]) <= length * 0.5 + 1e-6)
    np.testing.assert_array_equal(delta[..., 2:], 0)


def test_generate_keeps_the_first_k_in_group_and_counts_rejections():
    """A fake judge: 'in group' iff the move along direction a is positive."""
    schema = attributes.DEMO
    target = attributes.parse_target("glasses=yes", schema)

    def render(w):
        yes = (w[:, 0, 0] > 1.0).astype(np.float32)
        probs = {"tone": np.full((len(w), 3), 1 / 3), "hair": np.full((len(w), 2), 0.5),
                 "glasses": np.stack([1 - yes, yes], axis=1)}
        return probs, np.zeros((len(w), 2, 2, 3), np.uint8)

    ws = np.ones((4, 1, W_DIM), np.float32)
    k, tries = 2, 3
    v = var.generate(directions((1.0,)), PRIOR, ws, k, tries, jax.random.key(1), render, target,
                     obj.Objective(threshold=0.9))
    cand = var.candidates(directions((1.0,)), PRIOR, ws, k * tries, jax.random.key(1))
    ok = cand[:, :, 0, 0] > 1.0
    for i in range(4):
        want = np.flatnonzero(ok[i])[:k]
        got = v.ws[v.identity == i]
        np.testing.assert_array_equal(got, cand[i, want])
        assert list(v.index[v.identity == i]) == list(range(1, len(want) + 1))
    looked = [np.flatnonzero(ok[i])[k - 1] + 1 if ok[i].sum() >= k else k * tries
              for i in range(4)]
    assert v.rejected == sum(n - min(ok[i].sum(), k) for i, n in enumerate(looked))
    assert v.missing == sum(max(k - ok[i].sum(), 0) for i in range(4))


def test_fit_direction_recovers_a_separating_direction():
    key = jax.random.key(2)
    u = jax.random.normal(key, (2000, 8))
    true = jnp.asarray([0.6, -0.8, 0, 0, 0, 0, 0, 0])
    labels = (u @ true > 0.1).astype(jnp.int32)
    d, acc = var.fit_direction(u, labels)
    assert acc > 0.97
    assert float(d @ np.asarray(true)) > 0.97
