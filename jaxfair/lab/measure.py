"""Measured search arms: runs of one engine from given starts, and the numbers read from them.

An arm is one start (an initial batch and optionally a spread) run for the same budget as
the others (``run_arms``: arms alternate chunk by chunk, so on a shared machine they see the
same load). Read out per arm: generations to the first accepted candidate
(``first_accept``), accepted candidates per second in the steady state, the distinct
accepted latents (``distinct_accepted``: ``jaxfair.identity`` on the search coordinates, by
generation, then search), the accepted w (``accepted_w``) and how spread out they are
(``spread_of``). ``hybrid`` and ``distribution_eval`` compare arms with these numbers.

Example:
  arms = run_arms(engine, G.state, C.state, prior, targets, keys, chunks,
                  {"plain": (u0_prior, None), "hybrid": (u0, spread)})
  numbers = summarise(arms["hybrid"], engine, config.identity_radius)
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair import identity
from jaxfair.report import diversity
from jaxfair.search import engine as eng_lib
from jaxfair.search import spaces


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
