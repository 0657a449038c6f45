"""The search benchmark's batch-1 baseline: compiled before it is timed, and it counts what
it evaluates."""

import jax

from jaxfair.judge import attributes
from jaxfair.search import Engine, Objective, Space, bench, build, estimate_prior


def test_batch1_baseline_compiles_before_it_is_timed(tiny_G, tiny_C):
    space = Space.create("z", tiny_G.config)
    engine = Engine.create(tiny_G, tiny_C, space, build("SNES", space, 4),
                           Objective(threshold=0.4), num_searches=1, generations=1,
                           score_resolution=8, archive_capacity=4)
    prior = estimate_prior(tiny_G, jax.random.key(0), n=64)
    target = attributes.parse_target("tone=dark", attributes.DEMO)
    b1 = bench.Batch1(engine, tiny_G, tiny_C, prior, target)
    assert b1._accept._cache_size() == 1  # the timed loop only dispatches
    b1.run(0.5)
    r = b1.result()
    assert r["candidates"] == b1.evaluated > 0 and 0 < r["seconds"] < 5
    assert r["candidates_per_s"] == r["candidates"] / r["seconds"]
