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
(``measure.spread_of``: mean pairwise and median nearest-neighbour distance of their w, in W
standard deviations).

Example:
  u0, spread = initial_batch(key, fitted.ae_graphdef, fitted.ae_state,
                             gmmlib.select(fitted.mixtures, g), prior, engine.space, 8, 16)
  arms = measure.run_arms(engine, G.state, C.state, prior, targets, keys, chunks,
                          {"plain": (prior_batch(...), None), "hybrid": (u0, spread)})
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
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
from jaxfair.lab import measure
from jaxfair.models import autoencoder as ae
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
    arms: dict[str, dict[str, measure.Arm]]


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
        out[name] = measure.run_arms(engine, g_state, c_state, prior, targets, keys, chunks, starts)
        log(f"{name}: searched {', '.join(starts)} ({generations} generations)")
    return Comparison(engine, prior, generations, out)


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
            r = report[name][a] = measure.summarise(arm, comp.engine, config.identity_radius)
            _, w = measure.accepted_w(arm, comp.engine, comp.prior, G, config.truncation_psi)
            novel = identity.first_distinct(
                identity.to_prior_units(w, comp.prior.w_avg, comp.prior.w_std),
                config.identity_radius)
            r["distinct_identities"] = int(np.sum(novel))
            r["initial_spread_rms"] = round(arm.spread_rms if arm.spread_rms is not None
                                            else sc.sigma_init, 4)
            r["spread_of_accepted"] = measure.spread_of(w[novel], scale)
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
