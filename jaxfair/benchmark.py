r"""Throughput benchmark of the fused search: ``python -m jaxfair.benchmark``.

  python -m jaxfair.benchmark --config=configs/demo.py --out=out/benchmark.json

Measures in one run, on one model, device and population (``config.search``):
  fused     ``Engine.run``: S searches x P candidates x T generations per compiled call
            (steady state; compile time reported separately);
  unfused   the same engine one generation per call, with a host round trip (metrics
            copied out) after every generation;
  batch-1   the original method's loop: one candidate rendered and classified per call,
            the branching bookkeeping (queue, lineages) in Python on the host;
and the model cost: FLOP per candidate from XLA's cost analysis of the compiled
generate(score resolution) + classify function, achieved GFLOP/s, and this device's
measured float32 matmul peak. Prints a table and writes JSON.
"""

from __future__ import annotations

import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

import jaxfair
from jaxfair import attributes, cli
from jaxfair.search import job, spaces
from jaxfair.search import objective as obj

_OUT = flags.DEFINE_string("out", None, "Write the results as JSON here.")
_CHUNKS = flags.DEFINE_integer("chunks", 3, "Timed steady-state chunks of the fused engine.")
_BATCH1_SECONDS = flags.DEFINE_float("batch1_seconds", 20.0,
                                     "Wall time given to the batch-1 original loop.")


def matmul_peak(n: int = 1024, reps: int = 10) -> float:
    """Measured float32 matmul throughput of the default device, GFLOP/s."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def flops_per_candidate(engine, g_state, c_state, prior) -> float:
    """XLA's FLOP count of scoring one candidate (synthesis to score resolution + classify)."""
    u = jnp.zeros((1, engine.space.dim))
    fn = jax.jit(lambda g, c, p, u: engine.score(g, c, p, u, None, engine.score_resolution)[0])
    cost = fn.lower(g_state, c_state, prior, u).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])


def fused(engine, G, C, prior, targets, keys, chunks: int) -> dict:
    t = time.perf_counter()
    state = jax.block_until_ready(engine.init(G.state, C.state, prior, targets, keys))
    t_init = time.perf_counter() - t
    t = time.perf_counter()
    state, _ = jax.block_until_ready(engine.run(G.state, C.state, prior, targets, keys, state))
    t_first = time.perf_counter() - t
    acc0, ev0 = int(jnp.sum(state.accepted)), int(jnp.sum(state.evaluated))
    arc0 = int(jnp.sum(state.archive.count + state.archive.overflow))
    t = time.perf_counter()
    for _ in range(chunks):
        state, metrics = engine.run(G.state, C.state, prior, targets, keys, state)
        jax.device_get(metrics)  # what the job's host loop does once per chunk
    dt = time.perf_counter() - t
    ev = int(jnp.sum(state.evaluated)) - ev0
    return {"compile_and_first_s": t_init + t_first, "seconds": dt, "candidates": ev,
            "candidates_per_s": ev / dt,
            "accepted_per_s": (int(jnp.sum(state.accepted)) - acc0) / dt,
            "distinct_accepted_per_s": (int(jnp.sum(state.archive.count
                                                    + state.archive.overflow)) - arc0) / dt}


def unfused(engine1, G, C, prior, targets, keys, generations: int) -> dict:
    state = engine1.init(G.state, C.state, prior, targets, keys)
    state, m = engine1.run(G.state, C.state, prior, targets, keys, state)
    jax.device_get(m)
    acc0, ev0 = int(jnp.sum(state.accepted)), int(jnp.sum(state.evaluated))
    t = time.perf_counter()
    for _ in range(generations):
        state, m = engine1.run(G.state, C.state, prior, targets, keys, state)
        jax.device_get((m, state.archive.count))  # one host round trip per generation
    dt = time.perf_counter() - t
    ev = int(jnp.sum(state.evaluated)) - ev0
    return {"seconds": dt, "candidates": ev, "candidates_per_s": ev / dt,
            "accepted_per_s": (int(jnp.sum(state.accepted)) - acc0) / dt}


def batch1_original(engine, G, C, prior, target, seconds: float, seed: int = 0) -> dict:
    """The original method, one candidate per compiled call (z: N(0, 0.5^2) mutants)."""
    space = engine.space
    score = jax.jit(lambda g, c, p, u: engine.score(g, c, p, u, None,
                                                    engine.score_resolution)[0])
    sample = jax.jit(lambda g, p, k: spaces.sample(space, G.graphdef, g, p, k, 1, engine.psi))
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    step = 0.5 if space.name == "z" else 0.3 / float(prior.w_std)

    def evaluate(u):
        probs = score(G.state, C.state, prior, jnp.asarray(u[None], jnp.float32))
        return bool(obj.accepted(engine.objective, jax.device_get(probs), target)[0])

    def dist(a, b):  # spaces.distance in numpy (no device dispatch on the host path)
        if space.name == "z":
            a, b = a / np.sqrt(np.mean(a ** 2)), b / np.sqrt(np.mean(b ** 2))
        return float(np.sqrt(np.mean((a - b) ** 2)))

    evaluate(np.zeros(space.dim, np.float32))  # compile
    np.asarray(sample(G.state, prior, key))
    evaluated = accepted = 0
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        u = np.asarray(sample(G.state, prior, jax.random.fold_in(key, evaluated)))[0]
        evaluated += 1
        if not evaluate(u):
            continue
        accepted += 1  # a root: explore its lineage one candidate at a time
        root, failures = u, 0
        queue = [(u + step * _noise(rng, space, u.shape), 0.0) for _ in range(3)]
        while queue and failures < 20 and time.perf_counter() - t < seconds:
            x, parent_dist = queue.pop(0)
            evaluated += 1
            d = dist(x, root)
            if evaluate(x) and d > parent_dist:
                accepted += 1
                queue += [(x + step * _noise(rng, space, x.shape), d) for _ in range(3)]
            else:
                failures += 1
    dt = time.perf_counter() - t
    return {"seconds": dt, "candidates": evaluated, "candidates_per_s": evaluated / dt,
            "accepted_per_s": accepted / dt}


def _noise(rng, space, shape):
    if space.name == "z":
        return rng.normal(size=shape)
    return rng.uniform(-1.0, 1.0, size=shape)


def main(config):
    sc = config.search
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    try:
        engine = job.build_engine(config, G, C)
        engine1 = job.build_engine(_one_gen(config), G, C)
        target = attributes.parse_target(sc.target, C.schema)
    except (ValueError, attributes.TargetError) as e:
        cli.fail("jaxfair.benchmark", e)
    key = jax.random.key(sc.seed)
    prior = spaces.estimate_prior(G, jax.random.fold_in(key, 1))
    targets = attributes.stack_targets([target] * sc.num_searches)
    keys = jax.random.split(jax.random.fold_in(key, 2), sc.num_searches)
    peak = matmul_peak()
    flop = flops_per_candidate(engine, G.state, C.state, prior)
    rows = {"fused": fused(engine, G, C, prior, targets, keys, _CHUNKS.value),
            "unfused": unfused(engine1, G, C, prior, targets, keys,
                               _CHUNKS.value * sc.generations_per_chunk),
            "batch1": batch1_original(engine, G, C, prior, target, _BATCH1_SECONDS.value)}
    for r in rows.values():
        r["gflop_per_s"] = r["candidates_per_s"] * flop / 1e9
        r["fraction_of_matmul_peak"] = r["gflop_per_s"] / peak
    result = {
        "device": f"{jax.devices()[0].device_kind} x{len(jax.devices())} "
                  f"({platform.machine()}, {os.cpu_count()} CPU cores)",
        "generator": config.generator, "classifier": config.classifier,
        "strategy": sc.strategy, "space": sc.space, "target": sc.target,
        "searches": sc.num_searches, "population": sc.population_size,
        "generations_per_chunk": sc.generations_per_chunk,
        "score_resolution": engine.score_resolution or G.config.img_resolution,
        "gflop_per_candidate": flop / 1e9, "matmul_peak_gflop_per_s": peak, "rows": rows,
        "fused_over_batch1_accepted": rows["fused"]["accepted_per_s"]
        / max(rows["batch1"]["accepted_per_s"], 1e-12),
        "fused_over_unfused_candidates": rows["fused"]["candidates_per_s"]
        / rows["unfused"]["candidates_per_s"]}
    print(f"device: {result['device']}; {flop / 1e9:.3f} GFLOP/candidate; "
          f"matmul peak {peak:.1f} GFLOP/s")
    print(f"{'mode':<10}{'cand/s':>12}{'accepted/s':>12}{'GFLOP/s':>10}{'of peak':>9}")
    for name, r in rows.items():
        print(f"{name:<10}{r['candidates_per_s']:>12.1f}{r['accepted_per_s']:>12.2f}"
              f"{r['gflop_per_s']:>10.1f}{r['fraction_of_matmul_peak']:>9.1%}")
    print(f"fused compile + first chunk: {rows['fused']['compile_and_first_s']:.1f}s; "
          f"fused/batch-1 accepted per s: {result['fused_over_batch1_accepted']:.0f}x; "
          f"fused/unfused candidates per s: {result['fused_over_unfused_candidates']:.2f}x; "
          f"fused distinct accepted/s: {rows['fused']['distinct_accepted_per_s']:.2f}")
    if _OUT.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)


def _one_gen(config):
    c = config.copy_and_resolve_references()
    with c.unlocked():
        c.search.generations_per_chunk = 1
    return c


if __name__ == "__main__":
    cli.run(main, "jaxfair.benchmark", default_config="configs/demo.py")
