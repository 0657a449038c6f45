"""The one identity distance and rule (jaxfair.identity) against naive numpy formulas."""

import jax.numpy as jnp
import numpy as np

from jaxfair import identity


def test_distance_is_rms_of_the_difference_in_numpy_and_jnp():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    naive = np.array([np.sqrt(np.mean((x - y) ** 2)) for x, y in zip(a, b)])
    np.testing.assert_allclose(identity.distance(a, b), naive, rtol=1e-12)
    np.testing.assert_allclose(identity.distance(jnp.asarray(a, jnp.float32),
                                                 jnp.asarray(b, jnp.float32)), naive, rtol=1e-5)


def test_pairwise_matches_distance_and_is_exact_near_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 16)) + 100.0  # a large shared offset must not cost digits
    x[3] = x[1] + 1e-6
    d = identity.pairwise(x)
    naive = np.array([[np.sqrt(np.mean((u - v) ** 2)) for v in x] for u in x])
    np.testing.assert_allclose(d, naive, atol=1e-9)
    assert np.array_equal(d, d.T) and np.all(np.diag(d) == 0)
    np.testing.assert_allclose(identity.pairwise(x[:2], x[2:]), naive[:2, 2:], atol=1e-9)


def test_first_distinct_is_greedy_in_row_order():
    # rms distances: row 1 is 0.035 from row 0, row 3 repeats row 0.
    x = np.array([[0.0, 0.0], [0.05, 0.0], [1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(identity.first_distinct(x, 0.1), [True, False, True, False])
    # radius 0: only exact copies are one identity
    np.testing.assert_array_equal(identity.first_distinct(x, 0.0), [True, True, True, False])
    # rows kept before are never dropped and count as kept
    np.testing.assert_array_equal(identity.first_distinct(x, 0.1, earlier=x[2:3]),
                                  [True, False, False, False])
    np.testing.assert_array_equal(identity.first_distinct(x, 0.1, limit=1),
                                  [True, False, False, False])


def test_distinct_share_and_prior_units():
    w = np.array([[0.0, 0.0], [0.01, 0.0], [1.0, 1.0], [1.0, 1.05], [3.0, 0.0]])
    assert identity.distinct_share(identity.to_prior_units(w, 0.0, 1.0), 0.1) == 0.6
    # in units of a spread of 100 every row is the same identity as the first
    assert identity.distinct_share(identity.to_prior_units(w, 0.0, 100.0), 0.1) == 0.2
    assert identity.to_prior_units(np.ones((2, 3, 4)), 0.5, 2.0).shape == (2, 12)


def test_no_rows_are_no_identities():
    """A distribution unit's draw batch with nothing above the threshold gives 0 rows (it
    stopped `generate --config=configs/rahimi.py` with 'cannot reshape array of size 0')."""
    none = identity.to_prior_units(np.zeros((0, 512), np.float32), np.zeros(512), 1.0)
    assert none.shape == (0, 512)
    assert identity.to_prior_units(np.zeros((0, 3, 4)), 0.0, 1.0).shape == (0, 12)
    assert identity.first_distinct(none, 0.05).shape == (0,)
    assert identity.first_distinct(np.zeros((0, 2)), 0.1, earlier=np.zeros((0, 2))).shape == (0,)
    np.testing.assert_array_equal(identity.first_distinct(np.ones((2, 2)), 0.1,
                                                          earlier=np.zeros((0, 2))),
                                  [True, False])
