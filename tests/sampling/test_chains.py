"""Group-restricted chains: the proposal keeps the prior, the chain samples the restricted
prior exactly, and the helpers (directions, autocorrelation, thinning) do what they say."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxfair.sampling import chains

D = 6


def test_pcn_proposal_leaves_the_prior_invariant():
    n = 20_000
    z = jax.random.normal(jax.random.key(0), (n, D))
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(D, 2)))[0]
    prop = chains.pcn_propose(jax.random.key(1), z, jnp.broadcast_to(q, (n, D, 2)),
                              jnp.full(n, 0.3), jnp.full(n, 0.9))
    x = np.asarray(prop)
    assert np.abs(x.mean(axis=0)).max() < 0.03
    assert np.abs(np.cov(x.T) - np.eye(D)).max() < 0.04
    # and it is a real move: correlated with z, less so across the free complement
    inside = np.asarray(z) @ q
    assert np.corrcoef(inside[:, 0], (x @ q)[:, 0])[0, 1] == pytest.approx(
        np.sqrt(1 - 0.3 ** 2), abs=0.02)


def _toy_accepts(g_state, c_state, z, targets):
    """Group 'z0 > 1 and z1 < 0' (about 8 % of the prior); targets unused."""
    del g_state, c_state, targets
    return (z[:, 0] > 1.0) & (z[:, 1] < 0.0)


def _exact_group_samples(n, seed):
    r = np.random.default_rng(seed)
    z = r.normal(size=(40 * n, D))
    return z[(z[:, 0] > 1.0) & (z[:, 1] < 0.0)][:n].astype(np.float32)


def _run(propose_patch=None, c=64, steps=240, seed=0, fit=True):
    run = chains.make_chain_run(_toy_accepts, steps)
    q = np.eye(D, 2, dtype=np.float32)
    z0 = _exact_group_samples(c, seed)
    if fit:  # the planner's fit: from the group's faces (here the starts)
        mu, chol = chains.fit_span(z0 @ q, 2, 2)
    else:  # a poor (too wide, off-centre) fit: still exact, accepted less often
        mu, chol = np.zeros(2, np.float32), np.eye(2, dtype=np.float32) * 2.0
    _, hist, moved = run(None, None, jax.random.key(3), None, jnp.broadcast_to(q, (c, D, 2)),
                         jnp.broadcast_to(mu, (c, 2)), jnp.broadcast_to(chol, (c, 2, 2)),
                         jnp.full(c, 1.0), jnp.full(c, 3), jnp.asarray(z0))
    return np.asarray(hist), np.asarray(moved)


@pytest.fixture(scope="module")
def toy_chain_states():
    return _run()


def test_chain_states_are_draws_of_the_restricted_prior(toy_chain_states):
    hist, moved = toy_chain_states
    assert _toy_accepts(None, None, hist.reshape(-1, D), None).all()  # never leaves the group
    free = np.asarray(chains.is_free_move(np.arange(len(moved)), 3))
    assert free.mean() == pytest.approx(1 / 3, abs=0.01)
    # a fitted independence proposal in the span is accepted often; free moves almost always
    assert 0.3 < moved[~free].mean() < 1.0 and moved[free].mean() > 0.95
    x = hist[::12].reshape(-1, D)  # 20 x 64 thinned states
    # constrained coordinates: truncated normals; free ones: standard normals
    assert stats.kstest(x[:, 0], stats.truncnorm(1.0, np.inf).cdf).statistic < 0.05
    assert stats.kstest(x[:, 1], stats.truncnorm(-np.inf, 0.0).cdf).statistic < 0.05
    for i in range(2, D):
        assert stats.kstest(x[:, i], "norm").statistic < 0.05


def test_a_poor_span_fit_is_slower_but_still_exact():
    hist, moved = _run(fit=False)
    free = np.asarray(chains.is_free_move(np.arange(len(moved)), 3))
    x = hist[::12].reshape(-1, D)
    assert stats.kstest(x[:, 0], stats.truncnorm(1.0, np.inf).cdf).statistic < 0.06
    assert moved[~free].mean() < _run()[1][~free].mean()


def test_a_proposal_that_ignores_the_prior_is_caught(monkeypatch):
    """A plain random walk with the same acceptance samples the group uniformly, not as the
    prior does: its free coordinates spread out, and the check above fails for it."""
    def walk(key, z, q, b_c, b_f):
        del q, b_c
        return z + b_f[:, None] * jax.random.normal(key, z.shape)

    monkeypatch.setattr(chains, "pcn_propose", walk)
    hist, _ = _run()
    x = hist[::12].reshape(-1, D)
    assert max(stats.kstest(x[:, i], "norm").statistic for i in range(2, D)) > 0.1


def test_independence_ratio_is_the_prior_over_the_proposal():
    z = jnp.asarray(np.random.default_rng(0).normal(size=(3, D)), jnp.float32)
    q = jnp.broadcast_to(jnp.eye(D, 2), (3, D, 2))
    mu, chol = jnp.full((3, 2), 0.5), jnp.broadcast_to(jnp.eye(2) * 0.7, (3, 2, 2))
    prop, ratio = chains.independence_propose(jax.random.key(0), z, q, mu, chol)
    np.testing.assert_allclose(np.asarray(prop)[:, 2:], np.asarray(z)[:, 2:])  # free kept

    def log_n(x, m, s):
        return np.sum(-0.5 * ((x - m) / s) ** 2, axis=-1)

    c, c2 = np.asarray(z)[:, :2], np.asarray(prop)[:, :2]
    want = log_n(c2, 0, 1) - log_n(c, 0, 1) + log_n(c, 0.5, 0.7) - log_n(c2, 0.5, 0.7)
    np.testing.assert_allclose(np.asarray(ratio), want, rtol=1e-4, atol=1e-4)


def test_directions_recover_a_planted_direction():
    r = np.random.default_rng(0)
    z = r.normal(size=(4000, 16))
    v = r.normal(size=16)
    v /= np.linalg.norm(v)
    q = chains.directions(z, (z @ v)[:, None] + 0.1 * r.normal(size=(4000, 1)))
    assert q.shape == (16, 1)
    assert abs(float(q[:, 0] @ v)) > 0.99


def test_autocorrelation_and_thinning():
    r = np.random.default_rng(0)
    x = np.zeros((2000, 8, 3))
    for t in range(1, 2000):  # AR(1) with rho 0.8
        x[t] = 0.8 * x[t - 1] + np.sqrt(1 - 0.64) * r.normal(size=(8, 3))
    assert chains.lag1_autocorrelation(x) == pytest.approx(0.8, abs=0.02)
    assert chains.lag1_autocorrelation(x, 1.0) == pytest.approx(0.8, abs=0.02)
    # chains that stay near their starts look fast by their own spread, not by the truth
    near = x[:50] * 0.3
    assert chains.lag1_autocorrelation(near, 1.0) > chains.lag1_autocorrelation(near)
    assert chains.thinning(0.8, 0.2, 100) == 8  # 0.8^8 = 0.17 <= 0.2 < 0.8^7
    assert chains.thinning(0.1, 0.2, 100) == 1
    assert chains.thinning(0.999, 0.2, 32) == 32
    assert chains.lag1_autocorrelation(np.ones((5, 2, 2))) == 0.999  # nothing moved


def test_schedule_spends_moves_where_the_chain_is_slow():
    # slow inside the span, instant outside: one free move per cycle, the rest constrained
    period, thin = chains.schedule(0.9, 0.0, 0.5, 0.2, 64)
    assert period > 4 and thin >= period - 1
    # both slow alike: alternate
    period, thin = chains.schedule(0.8, 0.8, 0.5, 0.2, 64)
    assert period == 2
    assert chains.schedule(0.999, 0.999, 0.5, 0.2, 16)[1] == 16  # capped
