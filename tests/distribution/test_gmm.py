"""Diagonal Gaussian mixtures by EM: one step vs numpy, convergence, vmap over groups."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfair.distribution import gmm as gmmlib


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
    new, ll = jax.jit(gmmlib.em_step)(
        gmmlib.DiagGMM(jnp.asarray(w), jnp.asarray(m), jnp.asarray(v)), jnp.asarray(x),
        jnp.asarray(mask), 1e-3)
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


# Full covariances -------------------------------------------------------------------------

def _numpy_full_em_step(weights, means, covs, x, mask, reg):
    """Naive full-covariance EM step: explicit inverse and determinant per component."""
    n, d = x.shape
    k = len(weights)
    dens = np.zeros((n, k))
    for j in range(k):
        diff = x - means[j]
        maha = np.einsum("nd,de,ne->n", diff, np.linalg.inv(covs[j]), diff)
        dens[:, j] = weights[j] * np.exp(-0.5 * maha) / np.sqrt(
            (2 * np.pi) ** d * np.linalg.det(covs[j]))
    r = dens / dens.sum(1, keepdims=True) * mask[:, None]
    nk = r.sum(0)
    new_m = np.stack([(r[:, j:j + 1] * x).sum(0) / nk[j] for j in range(k)])
    new_c = np.stack([sum(r[i, j] * np.outer(x[i] - new_m[j], x[i] - new_m[j])
                          for i in range(n)) / nk[j] + reg * np.eye(d) for j in range(k)])
    ll = (np.log(dens.sum(1)) * mask).sum() / mask.sum()
    return nk / mask.sum(), new_m, new_c, ll


def _random_spd(rng, k, d):
    a = rng.normal(size=(k, d, d))
    return (a @ np.swapaxes(a, -1, -2) / d + 0.5 * np.eye(d)).astype(np.float32)


def test_full_em_step_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 3)).astype(np.float32)
    mask = (rng.uniform(size=150) < 0.7).astype(np.float32)
    w = np.array([0.2, 0.5, 0.3], np.float32)
    m = rng.normal(size=(3, 3)).astype(np.float32)
    c = _random_spd(rng, 3, 3)
    new, ll = jax.jit(gmmlib.em_step)(
        gmmlib.FullGMM(jnp.asarray(w), jnp.asarray(m), jnp.asarray(c)), jnp.asarray(x),
        jnp.asarray(mask), 1e-3)
    rw, rm, rc, rll = _numpy_full_em_step(*(a.astype(np.float64) for a in (w, m, c, x)),
                                          mask, 1e-3)
    np.testing.assert_allclose(new.weights, rw, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new.means, rm, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new.covariances, rc, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ll, rll, rtol=1e-5)
    # The log-density is the Cholesky form of the same Gaussian as the naive inverse/det.
    lp = np.asarray(jax.jit(gmmlib.component_log_probs)(
        gmmlib.FullGMM(*map(jnp.asarray, (w, m, c))), jnp.asarray(x)))
    diff = x[:, None].astype(np.float64) - m[None]
    maha = np.einsum("nkd,kde,nke->nk", diff, np.linalg.inv(c.astype(np.float64)), diff)
    want = np.log(w) - 0.5 * (3 * np.log(2 * np.pi) + np.log(np.linalg.det(c))) - 0.5 * maha
    np.testing.assert_allclose(lp, want, rtol=1e-4, atol=1e-4)


def _correlated_data(key, n=3000):
    """Two 2-d components with strong, opposite correlations (weights 0.6 / 0.4)."""
    means = np.array([[-3.0, 0.0], [3.0, 1.0]])
    covs = np.array([[[1.0, 0.9], [0.9, 1.0]], [[0.5, -0.4], [-0.4, 0.5]]])
    kc, kn = jax.random.split(key)
    comp = np.asarray(jax.random.choice(kc, 2, (n,), p=jnp.array([0.6, 0.4])))
    eps = np.asarray(jax.random.normal(kn, (n, 2)))
    x = means[comp] + np.einsum("nde,ne->nd", np.linalg.cholesky(covs)[comp], eps)
    return x.astype(np.float32), means, covs


def test_full_em_recovers_correlated_mixture_and_beats_diagonal():
    x, means, covs = _correlated_data(jax.random.key(0))
    masks = jnp.ones((2, len(x))).at[1, ::2].set(0.0)  # group 1: every other row
    keys = jax.random.split(jax.random.key(1), 2)
    full, ll = gmmlib.fit_groups_jit(keys, jnp.asarray(x), masks, 2, 60, 1e-4,
                                     covariance="full")
    assert isinstance(full, gmmlib.FullGMM) and full.covariances.shape == (2, 2, 2, 2)
    ll = np.asarray(ll)
    assert np.all(np.diff(ll, axis=1) > -1e-4), ll  # EM never decreases the likelihood
    for g in range(2):
        one = gmmlib.select(full, g)
        order = np.argsort(np.asarray(one.means)[:, 0])
        np.testing.assert_allclose(np.asarray(one.weights)[order], [0.6, 0.4], atol=0.04)
        np.testing.assert_allclose(np.asarray(one.means)[order], means, atol=0.1)
        np.testing.assert_allclose(np.asarray(one.covariances)[order], covs, atol=0.1)
    # Diagonal components cannot follow the correlations: a clearly worse fit.
    _, ll_diag = gmmlib.fit_groups_jit(keys, jnp.asarray(x), masks, 2, 60, 1e-4)
    assert np.all(ll[:, -1] > np.asarray(ll_diag)[:, -1] + 0.3), (ll[:, -1], ll_diag[:, -1])


def test_full_sample_moments():
    cov = np.array([[1.0, 0.8], [0.8, 1.0]], np.float32)
    gmm = gmmlib.FullGMM(jnp.array([0.3, 0.7]), jnp.array([[-5.0, 0.0], [5.0, 2.0]]),
                         jnp.asarray(np.stack([cov, 0.25 * cov])))
    s = np.asarray(gmmlib.sample(jax.random.key(0), gmm, 20000))
    np.testing.assert_allclose(np.mean(s[:, 0] < 0), 0.3, atol=0.01)
    right = s[s[:, 0] > 0]
    np.testing.assert_allclose(right.mean(0), [5.0, 2.0], atol=0.02)
    np.testing.assert_allclose(np.cov(right.T), 0.25 * cov, atol=0.01)


def test_unknown_covariance_type():
    with pytest.raises(ValueError, match="unknown covariance type 'spherical'; choose from "
                                         "diag, full"):
        gmmlib.init(jax.random.key(0), jnp.zeros((4, 2)), jnp.ones(4), 2, 1e-3, "spherical")


def test_full_with_diagonal_covariances_is_the_diagonal_mixture():
    """Same draws from the same key (L = diag(sqrt var)) and the same log-density: the
    draw step, which only calls ``sample``, gives either kind the same meaning."""
    diag = gmmlib.DiagGMM(jnp.array([0.4, 0.6]), jnp.array([[-1.0, 0.5, 2.0], [1.0, 0.0, 0.0]]),
                          jnp.array([[0.3, 1.2, 0.5], [2.0, 0.1, 1.0]]))
    full = gmmlib.FullGMM(diag.weights, diag.means, jax.vmap(jnp.diag)(diag.variances))
    sample = jax.jit(gmmlib.sample, static_argnums=2)
    key = jax.random.key(3)
    np.testing.assert_allclose(sample(key, full, 64), sample(key, diag, 64), rtol=1e-5,
                               atol=1e-6)
    x = sample(jax.random.key(4), diag, 32)
    log_prob = jax.jit(gmmlib.log_prob)
    np.testing.assert_allclose(log_prob(full, x), log_prob(diag, x), rtol=1e-5, atol=1e-5)
