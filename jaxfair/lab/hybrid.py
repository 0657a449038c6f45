"""Hybrid: a group's fitted mixture starts the search engine inside the group.

``python -m jaxfair.lab hybrid`` runs, for each group, the search of ``config.search``
on the same S searches, keys, population, chunk length and generation budget from three
starts (``ARMS``):

  plain       every search's initial batch u0 [P, D] from the prior, step size
              ``search.sigma_init`` (the engine's own start);
  start_only  each search draws one component of the group's mixture; u0 = P draws of it
              (codes -> decoder -> w -> the space's normalised coordinates), step size
              ``search.sigma_init``;
  hybrid      the same u0, and the component's spread in those coordinates (per-dimension
              std of 256 more decoded draws) as the strategy's initial spread
              (``Engine.init(spread=...)``, see ``strategies.with_spread``).

Everything else is the unchanged engine: distribution strategies take the best candidate of
u0 as their mean; population-based ones start from the whole batch. For strategies without
an adaptable spread (Open_ES, SimpleGA, DE, PSO, branching, rejection) hybrid is start_only
and runs once.

The mixtures live in W, so the search space must be 'w' or 'wplus' (every layer gets the
same w). 'z' is refused: it would need a z with mapping(z) = w for every sampled w, and the
mapping (a normalisation, then leaky-ReLU layers) has no usable inverse: even on the demo,
where its layers are square, the exact inverse moves by ~0.1 rms under the float32 rounding
of w, and a decoded w is off the surface mapping(z) anyway (``ground_truth``).

Per group and arm it reports generations to the first accepted candidate (0 = the initial
batch), accepted candidates per second in the steady state (chunks after the first, which
includes compilation), and the distinct accepted latents of all searches: every accepted
candidate is archived (``engine_settings``), then any within ``identity_radius`` of an
earlier one (``jaxfair.identity`` on the search coordinates; by generation, then search) is
a duplicate; and the distinct identities of the accepted w (``distinct_identities``, the
same rule in W); the initial spread's rms, and how spread out the accepted faces are
(``spread_of``: mean pairwise and median nearest-neighbour distance of their w, in W
standard deviations).

Example:
  u0, spread = initial_batch(key, fitted.ae_graphdef, fitted.ae_state,
                             gmmlib.select(fitted.mixtures, g), prior, engine.space, 8, 16)
  arms = run_arms(engine, G.state, C.state, prior, targets, keys, chunks,
                  {"plain": (prior_batch(...), None), "hybrid": (u0, spread)})
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

import jaxfair
from jaxfair import identity
from jaxfair import keys as keylib
from jaxfair.distribution import draw as distribution_draw
from jaxfair.distribution import fit as distribution
from jaxfair.distribution import gmm as gmmlib
from jaxfair.io import atomic
from jaxfair.judge import attributes
from jaxfair.models import autoencoder as ae
from jaxfair.report import diversity
from jaxfair.search import builder, spaces
from jaxfair.search import engine as eng_lib


def check_space(name: str) -> None:
    """Raises ValueError unless the search space can be started from W."""
    if name == "z":
        raise ValueError("hybrid search needs search.space 'w' or 'wplus': the fitted mixtures "
                         "live in W and z cannot be reached from W (pass "
                         "--config.search.space=w)")


@functools.partial(jax.jit, static_argnums=(1, 5, 6, 7, 8))
def initial_batch(key: jax.Array, ae_graphdef: nnx.GraphDef, ae_state: nnx.State,
                  mixture: gmmlib.GMM, prior: spaces.Prior, space: spaces.Space,
                  num_searches: int, population: int, spread_samples: int = 256
                  ) -> tuple[jax.Array, jax.Array]:
    """Each search's start from one group's mixture, in the space's coordinates
    (``u = (w - w_avg) / w_std``, repeated per layer in wplus).

    Every search draws one component k ~ weights of the mixture; its initial batch is P
    codes from component k decoded to w, and its spread the per-dimension standard
    deviation of ``spread_samples`` further decoded draws of k (the decoder is nonlinear:
    the component's spread in W is measured, not pushed through). The strategy takes the
    best of the batch as its mean (``Engine.init``), so mean and spread describe the same
    component.

    Returns:
      (u0 [S, P, space.dim], spread [S, space.dim]).
    """
    check_space(space.name)
    k_comp, k_draw = jax.random.split(key)
    comps = jax.random.categorical(k_comp, jnp.log(mixture.weights), shape=(num_searches,))

    def one(k, c):
        codes = gmmlib.sample(k, gmmlib.component(mixture, c), population + spread_samples)
        u = (ae.decode(ae_graphdef, ae_state, codes) - prior.w_avg) / prior.w_std
        layers = space.dim // space.w_dim  # every layer of W+ gets the same w
        return (jnp.tile(u[:population], (1, layers)),
                jnp.tile(jnp.std(u[population:], axis=0), layers))

    return jax.vmap(one)(jax.random.split(k_draw, num_searches), comps)


@functools.partial(jax.jit, static_argnums=(1, 4, 5, 6))
def prior_batch(key: jax.Array, g_graphdef: nnx.GraphDef, g_state: nnx.State,
                prior: spaces.Prior, space: spaces.Space, num_searches: int, population: int,
                psi: float | jax.Array) -> jax.Array:
    """u0 [S, P, space.dim] from the generator's prior (``spaces.sample`` per search): the
    plain arm's start, passed like the hybrid's so both share one compiled ``init``."""
    return jax.vmap(lambda k: spaces.sample(space, g_graphdef, g_state, prior, k, population,
                                            psi))(jax.random.split(key, num_searches))


@dataclasses.dataclass(frozen=True)
class Arm:
    """One measured search run (host arrays).

    Attributes:
      accepted: [generations + 1, S] accepted candidates per generation (row 0: u0).
      steady_seconds: wall time of every chunk after the first (compile excluded).
      steady_generations: generations in those chunks.
      init_seconds, first_chunk_seconds: the initial batch, the first chunk (compiles).
      state: the final engine state (archives).
      spread_rms: mean over searches of the initial spread's rms (None: sigma_init).
    """

    accepted: np.ndarray
    steady_seconds: float
    steady_generations: int
    init_seconds: float
    first_chunk_seconds: float
    state: eng_lib.SearchState
    spread_rms: float | None = None


def run_arms(engine: eng_lib.Engine, g_state, c_state, prior: spaces.Prior, targets,
             keys: jax.Array, chunks: int,
             starts: dict[str, tuple[jax.Array | None, jax.Array | None]]) -> dict[str, Arm]:
    """For every arm ``engine.init`` from its (u0, spread) (None: the prior batch,
    ``search.sigma_init``), then ``chunks`` calls of ``engine.run`` with no early stop, so
    every arm spends the same budget.

    Arms alternate chunk by chunk: on a shared machine they then see the same load, and
    their rates stay comparable. The host only copies metrics between chunks.
    """
    states, rows, init_s = {}, {}, {}
    for name, (u0, spread) in starts.items():
        t = time.perf_counter()
        states[name] = jax.block_until_ready(engine.init(g_state, c_state, prior, targets,
                                                         keys, u0, spread))
        init_s[name] = time.perf_counter() - t
        rows[name] = [np.asarray(jax.device_get(states[name].accepted))[None]]
    first_s, steady_s = {}, dict.fromkeys(starts, 0.0)
    for c in range(chunks):
        for name in starts:
            t = time.perf_counter()
            states[name], metrics = engine.run(g_state, c_state, prior, targets, keys,
                                               states[name])
            rows[name].append(np.asarray(jax.device_get(metrics["accepted"])))
            dt = time.perf_counter() - t
            if c == 0:
                first_s[name] = dt  # the first arm's includes compilation
            else:
                steady_s[name] += dt
    return {name: Arm(np.concatenate(rows[name]), steady_s[name],
                      (chunks - 1) * engine.generations, init_s[name], first_s[name],
                      states[name], _mean_rms(spread))
            for name, (_, spread) in starts.items()}


def _mean_rms(spread: jax.Array | None) -> float | None:
    if spread is None:
        return None
    return float(np.mean(np.sqrt(np.mean(np.square(np.asarray(spread)), axis=-1))))


def first_accept(accepted: np.ndarray) -> list[int | None]:
    """Per search, the first generation with an accepted candidate (None: never).

    Args:
      accepted: [generations + 1, S], row 0 the initial batch.
    """
    hit = accepted > 0
    return [int(np.argmax(hit[:, s])) if hit[:, s].any() else None
            for s in range(accepted.shape[1])]


def archived_latents(state: eng_lib.SearchState) -> tuple[np.ndarray, np.ndarray]:
    """Every archived row of every search, ordered by (generation, search).

    Returns:
      (u [N, D] search coordinates, generation [N]).
    """
    a = jax.device_get(state.archive)
    rows = sorted((int(a.generation[s, i]), s, i) for s in range(a.count.shape[0])
                  for i in range(min(int(a.count[s]), a.latents.shape[1])))
    if not rows:
        return np.zeros((0, a.latents.shape[-1]), np.float32), np.zeros(0, int)
    g, s, i = map(np.asarray, zip(*rows))
    return np.asarray(a.latents[s, i]), g


def distinct_accepted(state: eng_lib.SearchState, space: spaces.Space, radius: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Archived latents of all searches without near-duplicates (``identity.first_distinct``
    of canonical latents), earliest first.

    Returns:
      (u [M, D], generation [M]).
    """
    u, gen = archived_latents(state)
    if not len(u):
        return u, gen
    keep = identity.first_distinct(np.asarray(spaces.canonical(space, jnp.asarray(u))), radius)
    return u[keep], gen[keep]


def summarise(arm: Arm, engine: eng_lib.Engine, radius: float) -> dict:
    """Numbers of one arm for the report."""
    first = first_accept(arm.accepted)
    found = [f for f in first if f is not None]
    steady_accepted = int(arm.accepted[-arm.steady_generations:].sum()) \
        if arm.steady_generations else 0
    u, _ = distinct_accepted(arm.state, engine.space, radius)
    a = jax.device_get(arm.state.archive)
    # Never-accepting searches count as infinitely late (None when they are the majority).
    median = float(np.median([np.inf if f is None else f for f in first]))
    return {
        "first_accept_generation": first,
        "searches_with_accept": len(found),
        "mean_first_accept_generation": round(float(np.mean(found)), 2) if found else None,
        "median_first_accept_generation": None if np.isinf(median) else median,
        "accepted_initial_batch": int(arm.accepted[0].sum()),
        "accepted_first_chunk": int(arm.accepted[:1 + engine.generations].sum()),
        "accepted": int(arm.accepted.sum()),
        "candidates": int(np.sum(jax.device_get(arm.state.evaluated))),
        "accepted_per_s": round(steady_accepted / arm.steady_seconds, 2)
        if arm.steady_seconds else None,
        "steady_acceptance": round(steady_accepted / (arm.steady_generations
                                                     * engine.num_searches
                                                     * engine.population_size), 4)
        if arm.steady_generations else None,
        "candidates_per_s": round(arm.steady_generations * engine.num_searches
                                  * engine.population_size / arm.steady_seconds, 1)
        if arm.steady_seconds else None,
        "distinct_accepted": len(u),
        "archive_overflow": int(np.sum(a.overflow)),
        "init_seconds": round(arm.init_seconds, 3),
        "first_chunk_seconds": round(arm.first_chunk_seconds, 3),
        "steady_seconds": round(arm.steady_seconds, 3),
    }


def spread_of(w: np.ndarray, scale: np.ndarray, limit: int = 1000) -> dict:
    """How far apart accepted faces are: over the first ``limit`` w [N, (num_ws,) w_dim],
    the mean pairwise and median nearest-neighbour rms distance in W standard deviations
    (``scale`` [w_dim]); None below two."""
    x = np.asarray(w[:limit], np.float64) / scale
    x = x.reshape(len(x), int(np.prod(x.shape[1:])))
    if len(x) < 2:
        return {"n": len(x), "mean_pairwise": None, "median_nearest": None}
    d = diversity.pairwise(x, "rms")
    return {"n": len(x), "mean_pairwise": round(diversity.mean_pairwise(d), 4),
            "median_nearest": round(float(np.median(diversity.nearest_neighbour(d))), 4)}


def select_groups(text: str, schema: attributes.Schema, fitted: distribution.Fitted
                  ) -> list[int]:
    """Indices of the groups named in ``'target;target'`` ('': every combination group).

    Raises:
      ValueError: a group without a fitted mixture (one line naming the fitted ones).
    """
    parts = [p for p in (t.strip() for t in text.split(";")) if p]
    if not parts:
        return list(range(fitted.meta["config"]["num_combination_groups"]))
    return [distribution_draw.group_index(p, schema, fitted.groups) for p in parts]


def engine_settings(config: ml_collections.ConfigDict, generations: int) -> builder.Settings:
    """The search settings of ``config`` with archives that record every accepted candidate
    of the budget: capacity P x (generations + 1) and identity radius 0, so duplicates are
    judged afterwards with one rule for every arm and method. The archive steers a search
    only through search.novelty_weight (0 by default; the report records it)."""
    return builder.Settings.from_config(
        config, archive_capacity=config.search.population_size * (generations + 1),
        duplicate_radius=0.0)


# Search starts compared: prior batch; the group's mixture with search.sigma_init; the
# group's mixture and its spread (the mixture alone for strategies without a spread).
ARMS = ("plain", "start_only", "hybrid")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Measured arms of every group (``compare``): the engine and prior they ran with, and
    ``arms[group name][arm name]``."""

    engine: eng_lib.Engine
    prior: spaces.Prior
    generations: int
    arms: dict[str, dict[str, Arm]]


def compare(config: ml_collections.ConfigDict, G, C, fitted: distribution.Fitted,
            groups: list[int], generations: int, arms: tuple[str, ...],
            log: Callable[[str], None] = print) -> Comparison:
    """Runs ``config.search`` for every group with each arm's start (``ARMS``): 'plain'
    (prior samples, ``search.sigma_init``), 'start_only' (the group's mixture,
    ``search.sigma_init``) and/or 'hybrid' (the group's mixture, and its spread where the
    strategy adapts one); the last two not in space 'z'.

    One engine serves every group and arm: ``generations`` rounded up to whole chunks (at
    least two, the first one compiles), the same keys per group for every arm.
    """
    sc = config.search
    if unknown := set(arms) - set(ARMS):
        raise ValueError(f"unknown arms {sorted(unknown)}; choose from {', '.join(ARMS)}")
    if set(arms) - {"plain"}:
        check_space(sc.space)
    chunks = max(-(-generations // sc.generations_per_chunk), 2)
    generations = chunks * sc.generations_per_chunk
    engine = builder.build(engine_settings(config, generations), G, C)
    if not engine.strategy.adapts_spread and {"start_only", "hybrid"} <= set(arms):
        log(f"{engine.strategy.name} has no adaptable spread: hybrid = start_only, run once")
        arms = tuple(a for a in arms if a != "start_only")
    root = keylib.root(sc.seed)
    prior = spaces.estimate_prior(G, keylib.prior(root))
    mesh, (g_state, c_state, prior) = eng_lib.place(sc.num_searches, (G.state, C.state, prior))
    out = {}
    for g in groups:
        name = fitted.groups[g]
        targets = attributes.stack_targets([attributes.parse_target(name, C.schema)]
                                           * sc.num_searches)
        # The same keys for every arm: they differ only in the initial batch.
        keys = jax.random.split(keylib.unit(root, g), sc.num_searches)
        k_start = keylib.starts(root, g)
        starts = {}
        if "plain" in arms:
            starts["plain"] = (prior_batch(k_start, G.graphdef, G.state, prior, engine.space,
                                           sc.num_searches, engine.population_size,
                                           config.truncation_psi), None)
        if set(arms) - {"plain"}:
            u0, spread = initial_batch(k_start, fitted.ae_graphdef, fitted.ae_state,
                                       gmmlib.select(fitted.mixtures, g), prior,
                                       engine.space, sc.num_searches, engine.population_size)
            if "start_only" in arms:
                starts["start_only"] = (u0, None)
            if "hybrid" in arms:
                starts["hybrid"] = (u0, spread if engine.strategy.adapts_spread else None)
        if mesh is not None:
            targets, keys, starts = eng_lib.shard((targets, keys, starts), mesh)
        out[name] = run_arms(engine, g_state, c_state, prior, targets, keys, chunks, starts)
        log(f"{name}: searched {', '.join(starts)} ({generations} generations)")
    return Comparison(engine, prior, generations, out)


def accepted_w(arm: Arm, engine: eng_lib.Engine, prior: spaces.Prior, G, psi: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Every accepted candidate of an arm, in (generation, search) order, and the w the
    generator draws for it ([N, w_dim]; [N, num_ws, w_dim] in W+; z is mapped with psi).

    Returns:
      (u [N, D] search coordinates, w).
    """
    u, _ = archived_latents(arm.state)
    if not len(u):
        return u, np.zeros((0, G.config.w_dim), np.float32)
    latents = np.asarray(spaces.to_latent(engine.space, prior, u))
    if engine.space.name == "z":
        return u, np.asarray(G.mapping(latents, truncation_psi=psi)[:, 0])
    return u, latents


def run(config: ml_collections.ConfigDict, workdir: str, out: str,
        log: Callable[[str], None] = print) -> dict:
    """Plain vs hybrid search for ``config.distribution.groups`` with the model in workdir.

    Writes ``out/summary.json`` (atomically) and returns it.

    Raises:
      ValueError: space 'z', bad search settings, groups without a model, generations < 1.
    """
    dc, sc = config.distribution, config.search
    check_space(sc.space)
    if dc.hybrid_generations < 1:
        raise ValueError(f"distribution.hybrid_generations must be >= 1, got "
                         f"{dc.hybrid_generations}")
    atomic.check_empty(out, "output directory")
    fitted = distribution.load(workdir)
    G = jaxfair.load_generator(fitted.meta["generator"])
    C = jaxfair.load_classifier(fitted.meta["classifier"])
    if G.config.w_dim != fitted.ae_config.w_dim:
        raise ValueError(f"generator {fitted.meta['generator']} has w_dim {G.config.w_dim}, "
                         f"the autoencoder in {workdir} expects {fitted.ae_config.w_dim}")
    groups = select_groups(dc.groups, C.schema, fitted)
    scale = np.asarray(fitted.ae_state["w_std"][...])
    comp = compare(config, G, C, fitted, groups, dc.hybrid_generations, ARMS, log)
    report = {}
    for name, arms in comp.arms.items():
        report[name] = {}
        for a, arm in arms.items():
            r = report[name][a] = summarise(arm, comp.engine, config.identity_radius)
            _, w = accepted_w(arm, comp.engine, comp.prior, G, config.truncation_psi)
            novel = identity.first_distinct(
                identity.to_prior_units(w, comp.prior.w_avg, comp.prior.w_std),
                config.identity_radius)
            r["distinct_identities"] = int(np.sum(novel))
            r["initial_spread_rms"] = round(arm.spread_rms if arm.spread_rms is not None
                                            else sc.sigma_init, 4)
            r["spread_of_accepted"] = spread_of(w[novel], scale)
            log(f"{name} {a}: {r}")
    summary = {
        "groups": report, "model": workdir, "generations": comp.generations,
        "settings": {"space": sc.space, "strategy": sc.strategy,
                     "num_searches": sc.num_searches, "population_size": sc.population_size,
                     "generations_per_chunk": sc.generations_per_chunk,
                     "threshold": config.threshold, "accept_mode": sc.accept_mode,
                     "sigma_init": sc.sigma_init,
                     "hybrid_spread": "mixture component" if comp.engine.strategy.adapts_spread
                     else f"search.sigma_init ({sc.strategy} adapts no spread)",
                     "prior_weight": sc.prior_weight,
                     "novelty_weight": sc.novelty_weight,
                     "seed": sc.seed, "identity_radius": config.identity_radius,
                     "covariance": fitted.meta["config"].get("covariance", "diag")},
        "devices": [str(d) for d in jax.devices()],
        "jaxfair_version": jaxfair.__version__}
    with atomic.directory(out, "output directory") as tmp, \
            open(os.path.join(tmp, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
