"""Diagonal Gaussian mixtures by EM: one step vs numpy, convergence, vmap over groups."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair.sampling import gmm as gmmlib


def _numpy_em_step(weights, means, variances, x, mask, reg):
    """Naive EM step: explicit per-component Gaussian densities, loops over components."""
    n, d = x.shape
    dens = np.zeros((n, len(weights)))
    for k in range(len(weights)):
        z = (x - means[k]) ** 2 / variances[k]
        dens[:, k] = weights[k] * np.exp(-0.5 * z.sum(1)) / np.sqrt(
            (2 * np.pi) ** d * np.prod(variances[k]))
    r = dens / dens.sum(1, keepdims=True) * mask[:, None]
    nk = r.sum(0)
    new_w = nk / mask.sum()
    new_m = np.stack([(r[:, k:k + 1] * x).sum(0) / nk[k] for k in range(len(weights))])
    new_v = np.stack([(r[:, k:k + 1] * (x - new_m[k]) ** 2).sum(0) / nk[k] + reg
                      for k in range(len(weights))])
    ll = (np.log(dens.sum(1)) * mask).sum() / mask.sum()
    return new_w, new_m, new_v, ll


def _phi(t):
    return 0.5 * (1 + math.erf(t / math.sqrt(2)))


def _mixture_data(key, n=3000):
    """Three well separated 2-d diagonal components, weights 0.5 / 0.3 / 0.2."""
    means = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, -1.0]])
    stds = np.array([[0.5, 1.0], [1.0, 0.3], [0.7, 0.7]])
    kc, kn = jax.random.split(key)
    comp = np.asarray(jax.random.choice(kc, 3, (n,), p=jnp.array([0.5, 0.3, 0.2])))
    x = means[comp] + stds[comp] * np.asarray(jax.random.normal(kn, (n, 2)))
    return x.astype(np.float32), means, stds ** 2


def test_em_step_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    mask = (rng.uniform(size=200) < 0.7).astype(np.float32)
    w = np.array([0.2, 0.5, 0.3], np.float32)
    m = rng.normal(size=(3, 3)).astype(np.float32)
    v = rng.uniform(0.5, 2.0, size=(3, 3)).astype(np.float32)
    new, ll = gmmlib.em_step(gmmlib.DiagGMM(jnp.asarray(w), jnp.asarray(m), jnp.asarray(v)),
                             jnp.asarray(x), jnp.asarray(mask), 1e-3)
    rw, rm, rv, rll = _numpy_em_step(w.astype(np.float64), m.astype(np.float64),
                                     v.astype(np.float64), x.astype(np.float64), mask, 1e-3)
    np.testing.assert_allclose(new.weights, rw, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new.means, rm, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new.variances, rv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ll, rll, rtol=1e-5)
    np.testing.assert_allclose(gmmlib.log_prob(new, jnp.asarray(x[:2])).shape, (2,))


def test_em_recovers_known_mixture_and_likelihood_increases():
    x, means, variances = _mixture_data(jax.random.key(0))
    gmm, ll = jax.jit(gmmlib.fit, static_argnums=(3, 4))(
        jax.random.key(1), jnp.asarray(x), jnp.ones(len(x)), 3, 60, 1e-4)
    ll = np.asarray(ll)
    assert np.all(np.diff(ll) > -1e-4), ll  # EM never decreases the likelihood
    order = np.argsort(np.asarray(gmm.means)[:, 0])
    np.testing.assert_allclose(np.asarray(gmm.weights)[order], [0.5, 0.3, 0.2], atol=0.03)
    np.testing.assert_allclose(np.asarray(gmm.means)[order], means, atol=0.1)
    np.testing.assert_allclose(np.asarray(gmm.variances)[order], variances, rtol=0.15)


def test_fit_groups_equals_per_group_fits():
    x, _, _ = _mixture_data(jax.random.key(2), n=600)
    rng = np.random.default_rng(1)
    masks = np.stack([x[:, 0] < 0, x[:, 1] > 1, rng.uniform(size=len(x)) < 0.5]
                     ).astype(np.float32)
    keys = jax.random.split(jax.random.key(3), 3)
    stacked, lls = gmmlib.fit_groups_jit(keys, jnp.asarray(x), jnp.asarray(masks), 2, 30, 1e-3)
    for g in range(3):
        one, ll = gmmlib.fit(keys[g], jnp.asarray(x), jnp.asarray(masks[g]), 2, 30, 1e-3)
        for a, b in zip(jax.tree.leaves(gmmlib.select(stacked, g)), jax.tree.leaves(one)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(lls[g], ll, rtol=1e-4, atol=1e-5)
    # A group's mixture sits inside the group: group 0 is x[:, 0] < 0.
    assert float(jnp.max(stacked.means[0, :, 0])) < 0


def test_sample_moments():
    gmm = gmmlib.DiagGMM(jnp.array([0.25, 0.75]), jnp.array([[-2.0, 0.0], [2.0, 1.0]]),
                         jnp.array([[0.25, 1.0], [1.0, 0.04]]))
    s = np.asarray(gmmlib.sample(jax.random.key(0), gmm, 20000))
    np.testing.assert_allclose(s.mean(0), [1.0, 0.75], atol=0.05)
    # P(x0 < 0) = 0.25 Phi(4) + 0.75 Phi(-2)
    expected = 0.25 * _phi(4.0) + 0.75 * _phi(-2.0)
    np.testing.assert_allclose(np.mean(s[:, 0] < 0), expected, atol=0.01)
    np.testing.assert_allclose(s[s[:, 0] > 0, 1].std(), 0.2, rtol=0.1)
