"""Strategy registry checks and the branching baseline on a synthetic problem (no models)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfair.search import spaces, strategies

Z = spaces.Space("z", 8, 8, 4)
WPLUS = spaces.Space("wplus", 8, 8, 4)


@pytest.mark.parametrize("name,space,pop,match", [
    ("Nelder_Mead", Z, 8, "unknown strategy"), ("CMA_ES", WPLUS, 8, "refused in wplus"),
    ("Open_ES", Z, 7, "must be even"), ("DE", Z, 3, ">= 4"), ("SNES", Z, 1, ">= 2")])
def test_bad_strategy_settings(name, space, pop, match):
    with pytest.raises(ValueError, match=match):
        strategies.build(name, space, pop)


def test_every_strategy_builds_and_runs_a_step():
    prior = spaces.Prior(jnp.zeros(8), jnp.float32(1.0))
    u0 = jax.random.normal(jax.random.key(0), (8, 8))
    loss0 = jnp.sum(u0 ** 2, -1)
    for name in strategies.STRATEGIES:
        s = strategies.build(name, Z, 8)
        params = s.make_params(prior)
        st = s.init(jax.random.key(1), u0, loss0, loss0 < 8, params)
        u, st = s.ask(jax.random.key(2), st, u0 + 1, params)
        assert u.shape == (8, 8) and bool(jnp.all(jnp.isfinite(u))), name
        s.tell(jax.random.key(3), u, jnp.sum(u ** 2, -1), jnp.ones(8, bool), st, params)


def _branching_run(accept_fn, gens=30, pop=8):
    s = strategies.Branching(Z, pop)
    params = s.make_params(spaces.Prior(jnp.zeros(8), jnp.float32(1.0)))

    @jax.jit
    def run(key):
        u0 = jax.random.normal(key, (pop, 8))
        st = s.init(key, u0, jnp.zeros(pop), accept_fn(u0), params)

        def body(st, k):
            k1, k2, k3 = jax.random.split(k, 3)
            u, st = s.ask(k1, st, jax.random.normal(k2, (pop, 8)), params)
            ok = accept_fn(u)
            lineage = st.pending_lineage
            return s.tell(k3, u, jnp.zeros(pop), ok, st, params), (u, ok, lineage)

        return jax.lax.scan(body, st, jax.random.split(key, gens))

    return s, run(jax.random.key(0))


def test_branching_grows_accepted_lineages_and_searches_roots():
    # Accepted iff the first coordinate is positive: about half of the prior.
    s, (st, (u, ok, lineage)) = _branching_run(lambda u: u[:, 0] > 0)
    assert int(st.roots_found) > 0
    lineage = np.asarray(lineage)
    assert (lineage >= 0).mean() > 0.5  # most evaluations now come from lineages
    assert np.all(np.asarray(st.failures)[np.asarray(st.alive)] < s.max_failures)
    # Accepted children (not root searches) gave new identities: lineages really grow.
    assert np.asarray(ok)[lineage >= 0].sum() > 0


def test_branching_drops_lineages_after_max_failures_or_when_exhausted():
    s = strategies.Branching(Z, 8)
    params = s.make_params(spaces.Prior(jnp.zeros(8), jnp.float32(1.0)))
    u0 = jax.random.normal(jax.random.key(0), (8, 8))
    st = s.init(jax.random.key(1), u0, jnp.zeros(8), jnp.ones(8, bool), params)
    assert int(st.roots_found) == 8 and int(jnp.sum(st.queue_valid)) == 24
    st = st.replace(failures=st.failures.at[0].set(s.max_failures - 1))
    u, st = s.ask(jax.random.key(2), st, u0, params)  # the 8 oldest: 3 + 3 + 2 children
    assert np.asarray(st.pending_lineage).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    st = s.tell(jax.random.key(3), u, jnp.zeros(8), jnp.zeros(8, bool), st, params)
    # Lineage 0 hit max_failures, lineage 1 has nothing queued, 2..7 still have children.
    assert np.asarray(st.alive).tolist() == [False, False] + [True] * 6
    assert int(st.failures[0]) >= s.max_failures
    queued = np.asarray(st.queue_lineage)[np.asarray(st.queue_valid)]
    assert sorted(queued.tolist()) == [2] + sorted([3, 4, 5, 6, 7] * 3)
