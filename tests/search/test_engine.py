"""The fused engine: scan == steps, vmap == separate searches, one trace, sharding."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfair.judge import attributes, sizing
from jaxfair.search import STRATEGIES, Engine, Objective, Space, build, estimate_prior, spaces
from jaxfair.search import archive as arc_lib
from jaxfair.search import engine as eng_lib

TARGETS = ("tone=dark", "hair=long,glasses=yes")


def make(G, C, searches, generations, strategy="Sep_CMA_ES"):
    space = Space.create("z", G.config)
    return Engine.create(G, C, space, build(strategy, space, 8), Objective(threshold=0.4),
                         num_searches=searches, generations=generations, score_resolution=8,
                         archive_capacity=16)


def targets(*texts):
    return attributes.stack_targets([attributes.parse_target(t, attributes.DEMO)
                                     for t in texts])


@pytest.fixture(scope="module")
def setup(tiny_G, tiny_C):
    prior = estimate_prior(tiny_G, jax.random.key(0), n=256)
    keys = jax.random.split(jax.random.key(1), 2)
    return tiny_G, tiny_C, prior, keys


def close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   rtol=1e-4, atol=1e-4)


def test_scan_equals_steps_and_one_trace(setup):
    G, C, prior, keys = setup
    tg = targets(*TARGETS)
    two, one = make(G, C, 2, 2), make(G, C, 2, 1)
    s0 = two.init(G.state, C.state, prior, tg, keys)
    s2, m2 = two.run(G.state, C.state, prior, tg, keys, s0)
    s1, m1a = one.run(G.state, C.state, prior, tg, keys, s0)
    s1, m1b = one.run(G.state, C.state, prior, tg, keys, s1)
    close(s2, s1)
    close(m2, jax.tree.map(lambda a, b: jnp.concatenate([a, b]), m1a, m1b))
    assert s2.generation.tolist() == [3, 3] and s2.evaluated.tolist() == [24, 24]
    # More chunks, other targets, other weights and keys: no new trace.
    before = Engine.run._cache_size()
    g2 = jax.tree.map(lambda x: x * 1.01, G.state)
    s3, _ = two.run(g2, C.state, prior, targets("tone=light", "any"),
                    jax.random.split(jax.random.key(9), 2), s2)
    two.run(G.state, C.state, prior, tg, keys, s3)
    assert Engine.run._cache_size() == before


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_run_returns_the_state_avals_it_was_given(setup, strategy):
    """Chunk 2 of every job reuses chunk 1's ``run`` program: the state ``run`` returns has
    the shapes, dtypes and weak types of the one it was given, for every strategy (Open_ES
    and SimpleGA used to return a weakly typed std, and compiled ``run`` twice). Traced with
    ``eval_shape``: nothing is compiled."""
    G, C, prior, keys = setup
    engine, tg = make(G, C, 2, 1, strategy), targets(*TARGETS)
    s0 = jax.eval_shape(engine.init, G.state, C.state, prior, tg, keys)
    s1, _ = jax.eval_shape(engine.run, G.state, C.state, prior, tg, keys, s0)
    avals = [jax.tree.map(lambda x: (x.shape, x.dtype, x.weak_type), s) for s in (s0, s1)]
    assert avals[0] == avals[1]


def test_vmapped_searches_equal_separate_searches(setup):
    G, C, prior, keys = setup
    both = make(G, C, 2, 1)
    single = make(G, C, 1, 1)
    tg = targets(*TARGETS)
    s = both.init(G.state, C.state, prior, tg, keys)
    s, m = both.run(G.state, C.state, prior, tg, keys, s)
    for i, text in enumerate(TARGETS):
        k = keys[i:i + 1]
        si = single.init(G.state, C.state, prior, targets(text), k)
        si, mi = single.run(G.state, C.state, prior, targets(text), k, si)
        close(jax.tree.map(lambda x, i=i: x[i:i + 1], s), si)
        close(jax.tree.map(lambda x, i=i: x[:, i:i + 1], m), mi)


SHARDED = r"""
import jax, numpy as np
import sys; sys.path[:0] = ["tests/search", "tests"]
from conftest import tiny_generator, tiny_classifier
from test_engine import make, targets
from jaxfair.search import estimate_prior, engine as E
assert len(jax.devices()) == 8
G, C = tiny_generator(), tiny_classifier()
eng = make(G, C, 8, 2, strategy="branching")
prior = estimate_prior(G, jax.random.key(0), n=256)
tg = targets(*(["tone=dark", "hair=long"] * 4))
keys = jax.random.split(jax.random.key(1), 8)
ref = eng.run(G.state, C.state, prior, tg, keys, eng.init(G.state, C.state, prior, tg, keys))
mesh = E.search_mesh(8)
g, c, p = E.replicate((G.state, C.state, prior), mesh)
t, k = E.shard((tg, keys), mesh)
out = eng.run(g, c, p, t, k, eng.init(g, c, p, t, k))
assert len(out[0].archive.latents.sharding.device_set) == 8
assert out[0].archive.latents.addressable_shards[0].data.shape[0] == 1
for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out)):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-4, atol=1e-4)
print("OK")
"""


# ~21 s (29-39 beside the other worker): a process with 8 CPU devices compiles the branching
# engine (S 8) unsharded and sharded, four programs of its own.
def test_searches_shard_over_8_cpu_devices():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", SHARDED], cwd=root, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_search_mesh_needs_divisible_searches():
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        eng_lib.search_mesh(3, jax.devices() * 2)


# 10-14 CPU s: the rejection engine with the feature test (init and run of its own).
def test_feature_radius_archive_has_no_near_pairs_and_exact_counts(setup):
    G, C, prior, keys = setup
    space = Space.create("z", G.config)
    # Both engines score at 8 px in float32: one compiled feature function serves both.
    features = jax.jit(lambda g, c, p, u: make(G, C, 2, 1).score(g, c, p, u, None)[1])
    u0 = jax.random.normal(jax.random.key(4), (16, 16))
    f0 = features(G.state, C.state, prior, u0)
    d = np.asarray(arc_lib.feature_distance(f0, f0)) + 9 * np.eye(16)
    # A radius at which about half of a prior batch has a feature-space near-duplicate.
    radius = float(np.median(d.min(axis=1)))
    eng = Engine.create(G, C, space, build("rejection", space, 8), Objective(threshold=0.4),
                        num_searches=2, generations=3, score_resolution=8,
                        archive_capacity=12, feature_radius=radius)
    tg = targets("any", "any")  # every candidate is accepted: the archive sees them all
    s = eng.init(G.state, C.state, prior, tg, keys)
    s, _ = eng.run(G.state, C.state, prior, tg, keys, s)
    a = jax.device_get(s.archive)
    # Every accepted candidate is stored, counted as overflow, or counted as a duplicate.
    assert (a.count + a.overflow + a.duplicates).tolist() == s.accepted.tolist() == [32, 32]
    assert all(a.duplicates > 0) and all(a.overflow > 0)
    for i in range(2):
        n = int(a.count[i])
        lat, feat = a.latents[i, :n], a.features[i, :n]
        # Stored features are what the classifier says about the stored latents (the 12
        # rows filled up to f0's 16: one compiled feature function, rows independent).
        f = features(G.state, C.state, prior, jnp.concatenate([a.latents[i], u0[12:]]))[:n]
        np.testing.assert_allclose(f, feat, rtol=1e-4, atol=1e-5)
        off = ~np.eye(n, dtype=bool)
        assert np.all(np.asarray(spaces.distance(space, lat[:, None], lat[None]))[off] > 0.05)
        assert np.all(np.asarray(arc_lib.feature_distance(feat, feat))[off] > radius)


def test_micro_batched_scoring_equals_the_whole_batch(setup):
    G, C, prior, keys = setup
    tg = targets(*TARGETS)
    whole = make(G, C, 2, 1)
    space = whole.space
    micro = Engine.create(G, C, space, whole.strategy, whole.objective, num_searches=2,
                          generations=1, score_resolution=8, archive_capacity=16,
                          eval_batch=3)  # 16 candidates: 5 micro-batches + 1 padded
    close(micro.init(G.state, C.state, prior, tg, keys),
          whole.init(G.state, C.state, prior, tg, keys))


def test_size_run_is_the_engine_itself_when_the_whole_batch_fits(setup):
    """A budget the whole S x P batch fits: the same engine object, and the executable
    compiled while sizing gives bitwise the state of ``engine.run``."""
    G, C, prior, keys = setup
    tg = targets(*TARGETS)
    eng = make(G, C, 2, 1)
    args = (G.state, C.state, prior, tg, keys)
    sized = eng_lib.size_run(eng, 1 << 40, *args)
    assert sized.jitted.engine is eng and sized.batch == sized.configured == 16
    s0 = eng.init(*args)
    for a, b in zip(jax.tree.leaves(sized(*args, s0)), jax.tree.leaves(eng.run(*args, s0))):
        assert np.array_equal(np.asarray(a), np.asarray(b))


# 14-18 CPU s: run at micro-batches 2 and 1 and init at 1 (test_job's small-budget case
# then loads all three from the compilation cache).
def test_size_run_under_a_small_budget_micro_batches_the_candidates(setup):
    """A budget below the compiled memory of the configured micro-batch (``eval_batch=2``,
    the upper bound): the engine scores 1 candidate at a time, within the budget, and its
    run completes with sane counts and finite losses. Not compared bitwise with the whole
    batch (another batch size rounds differently); micro-batched scoring equals it to 1e-4
    in ``test_micro_batched_scoring_equals_the_whole_batch``."""
    G, C, prior, keys = setup
    tg = targets(*TARGETS)
    base = make(G, C, 2, 1)
    eng = Engine.create(G, C, base.space, base.strategy, base.objective, num_searches=2,
                        generations=1, score_resolution=8, archive_capacity=16, eval_batch=2)
    args = (G.state, C.state, prior, tg, keys)
    budget = sizing.compiled_memory(*eng_lib.run_factory(eng, *args)(1)).total
    sized = eng_lib.size_run(eng, budget, *args)
    micro = sized.jitted.engine
    assert (sized.batch, sized.configured, micro.eval_batch) == (1, 2, 1)
    assert sized.memory.total <= budget  # and batch 2 did not fit: 1 was chosen
    state, metrics = sized(*args, micro.init(*args))
    assert state.generation.tolist() == [2, 2] and state.evaluated.tolist() == [16, 16]
    assert np.all(np.isfinite(np.asarray(metrics["best_loss"])))
