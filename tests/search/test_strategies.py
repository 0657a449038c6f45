"""Strategy registry checks and the branching baseline on a synthetic problem (no models)."""

import functools

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


def _init_ask_tell(s, prior, u0, loss0):
    params = s.make_params(prior)
    st = s.init(jax.random.key(1), u0, loss0, loss0 < 8, params)
    u, st = s.ask(jax.random.key(2), st, u0 + 1, params)
    return u, s.tell(jax.random.key(3), u, jnp.sum(u ** 2, -1), jnp.ones(8, bool), st, params)


# ~16 CPU s (20 s eager): ten programs of their own (the engine tests compile Sep_CMA_ES
# only); each strategy's step also runs in the spread and branching tests.
def test_every_strategy_builds_and_runs_a_step():
    prior = spaces.Prior(jnp.zeros(8), jnp.float32(1.0))
    u0 = jax.random.normal(jax.random.key(0), (8, 8))
    loss0 = jnp.sum(u0 ** 2, -1)
    for name in strategies.STRATEGIES:
        # Jitted as in the engine: one program per strategy, not each operation compiled
        # on its own (~200 eager compiles, 20 CPU s).
        u, _ = jax.jit(functools.partial(_init_ask_tell, strategies.build(name, Z, 8)))(
            prior, u0, loss0)
        assert u.shape == (8, 8) and bool(jnp.all(jnp.isfinite(u))), name


@pytest.mark.parametrize("name", ["Sep_CMA_ES", "CMA_ES", "SNES", "LM_MA_ES"])
def test_with_spread_sets_the_first_generation_spread(name):
    """A per-dimension spread replaces sigma: the first asked population has that
    per-dimension std (LM_MA_ES: an isotropic step size, so their rms), and the strategy
    runs on from there."""
    d = 8
    spread = jnp.array([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 0.3, 0.6])

    def first_generation(pop):
        s = strategies.build(name, spaces.Space("z", d, d, 4), pop, sigma=0.5)
        assert s.adapts_spread
        params = s.make_params(spaces.Prior(jnp.zeros(d), jnp.float32(1.0)))
        u0 = jnp.zeros((pop, d)) + 3.0
        st = s.with_spread(s.init(jax.random.key(1), u0, jnp.zeros(pop), None, params),
                           spread)
        u, st = s.ask(jax.random.key(2), st, u0, params)
        return s, params, u, st

    _, _, u, _ = first_generation(4096)  # 4,096 draws: ~1.1 % error per std
    np.testing.assert_allclose(np.mean(np.asarray(u), axis=0), 3.0, atol=0.1)
    rms = float(np.sqrt(np.mean(np.square(spread))))
    want = np.full(d, rms) if name == "LM_MA_ES" else np.asarray(spread)
    np.testing.assert_allclose(np.std(np.asarray(u), axis=0), want, rtol=0.06)
    s, params, u, st = first_generation(16)  # (LM_MA_ES's M overflows at P = 4,096)
    st = s.tell(jax.random.key(3), u, jnp.sum(u ** 2, -1), None, st, params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(st)), name


@pytest.mark.parametrize("name", ["Open_ES", "SimpleGA", "PSO", "branching", "rejection"])
def test_strategies_without_a_spread_say_so(name):
    s = strategies.build(name, Z, 8)
    assert not s.adapts_spread
    if isinstance(s, strategies.EvosaxStrategy):
        with pytest.raises(ValueError, match=f"strategy {name} has no adaptable spread"):
            s.with_spread(None, jnp.ones(8))


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


# ~5 CPU s: ~130 eager operations compiled at P 8 (none shared with the default cases).
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


def _one_round(s, ok_root, ok_batch):
    """init with roots where ok_root, one ask, one tell: (state after init, u, state)."""
    params = s.make_params(spaces.Prior(jnp.zeros(8), jnp.float32(1.0)))
    p, d = s.population_size, s.space.dim
    u0 = jax.random.normal(jax.random.key(0), (p, d))
    st0 = s.init(jax.random.key(1), u0, jnp.zeros(p), jnp.asarray(ok_root), params)
    u, st = s.ask(jax.random.key(2), st0, u0 + 5.0, params)
    return st0, u, s.tell(jax.random.key(3), u, jnp.zeros(p), jnp.asarray(ok_batch), st, params)


def _queued(st, lineage):
    mask = np.asarray(st.queue_valid) & (np.asarray(st.queue_lineage) == lineage)
    return np.asarray(st.queue_u)[mask]


# ~5-7 CPU s: ~120 eager operations compiled in wplus (dimension 32, not z's 8).
def test_branching_wplus_stops_branching_after_max_pops():
    assert strategies.Branching(WPLUS, 8).max_pops == 5000  # the original's W+ budget
    assert strategies.Branching(Z, 8).max_pops == 0  # z: unlimited, as the original
    root_only = [True, False, False, False]
    # max_pops=2: the root (pop 1) branches; its 3 accepted children (pops 2-4) do not,
    # so the lineage ends with nothing queued. Unlimited: the children branch.
    _, u, st = _one_round(strategies.Branching(WPLUS, 4, max_pops=2), root_only, [True] * 4)
    assert np.asarray(st.pending_lineage).tolist() == [0, 0, 0, -1]
    assert int(st.pops[0]) == 4 and not bool(st.alive[0]) and len(_queued(st, 0)) == 0
    _, _, st_inf = _one_round(strategies.Branching(WPLUS, 4, max_pops=0), root_only,
                              [True] * 4)
    assert bool(st_inf.alive[0]) and len(_queued(st_inf, 0)) > 3
    # max_pops=3: only pop 2 (the first child) branches; every queued grandchild is its
    # mutant, and farther from the root than it (checked before rendering).
    s = strategies.Branching(WPLUS, 4, max_pops=3)
    st0, u, st = _one_round(s, root_only, [True] * 4)
    kids = _queued(st, 0)
    root, parent = np.asarray(st0.roots[0]), np.asarray(u[0])
    assert 0 < len(kids) <= 3 and len(kids) < len(_queued(st_inf, 0))
    step = float(s.make_params(spaces.Prior(jnp.zeros(8), jnp.float32(1.0))).step)
    assert np.all(np.abs(kids - parent) <= step + 1e-6)
    dist = np.sqrt(np.mean((kids - root) ** 2, axis=-1))
    assert np.all(dist > np.sqrt(np.mean((parent - root) ** 2)))


def test_branching_counts_only_rejections_as_failures():
    # A rejected child is a failure; accepted children are not (whatever their distance).
    s = strategies.Branching(Z, 4)
    _, _, st = _one_round(s, [True, False, False, False], [True, False, True, False])
    assert int(st.failures[0]) == 1 and int(st.pops[0]) == 4
