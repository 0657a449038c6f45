"""How a step of work units finds its identities: the fused search or a fitted distribution.

``finder.find(units)`` returns one ``Found`` per unit (``size`` distinct latents of the
unit's group), a pure function of (config, weights, unit id):

  search        ``units_per_step x searches_per_unit`` fused searches (``Engine.run``
                chunks), every unit's searches for its own group with keys
                ``fold_in(units_root, id)``; a short step is padded with copies of its last
                unit so every step has the same shape (one trace). A unit takes its first
                ``size`` distinct accepted latents in (generation, search, slot) order: the
                archives only append, so running more generations than a unit needed never
                changes what it takes.
  distribution  the unit's group mixture (``python -m jaxfair.sample fit``), decoded to W,
                rendered and classified in batches with keys ``fold_in(fold_in(units_root,
                id), batch)``; the first ``size`` samples that meet the threshold and are
                not near-duplicates of earlier ones are taken.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxfair import identity
from jaxfair import keys as keylib
from jaxfair.judge import attributes
from jaxfair.pipeline.plan import Unit
from jaxfair.search import builder, readout, spaces
from jaxfair.search import engine as eng_lib
from jaxfair.search.readout import TargetNotReached  # a unit's budget ran out

METHODS = ("planner", "search", "distribution")


@dataclasses.dataclass
class Found:
    """One unit's identities: ws [n, num_ws, w_dim]; z [n, z_dim] (space z) or None;
    search [n] (which of the unit's searches, or draw batch, found it); stats."""

    ws: np.ndarray
    z: np.ndarray | None
    search: np.ndarray
    stats: dict


class Finder(Protocol):
    prior: spaces.Prior
    latent_space: str  # what latents.npy holds: 'w' or 'wplus'
    evaluations: dict[str, int]  # evaluations of a dataset-wide phase (not a unit's)
    short: dict[int, int]  # groups the finder could not fill: missing identities
    best: dict[str, dict[str, float]]  # their best target probabilities

    def prepare(self, workdir: str, log) -> None: ...  # before any unit

    def covers(self, unit: Unit) -> bool: ...  # whether find() can make this unit

    def find(self, units: list[Unit]) -> list[Found]: ...


def roots(config: ml_collections.ConfigDict, G) -> tuple[spaces.Prior, jax.Array]:
    """(prior statistics of G, root key of the unit streams) of a run."""
    root = keylib.root(config.seed)
    return spaces.estimate_prior(G, keylib.prior(root)), keylib.units(root)


def create(config: ml_collections.ConfigDict, G, C, groups: list[str]) -> Finder:
    """The finder of ``config.method``."""
    if config.method == "planner":
        from jaxfair.pipeline import pool

        prior, _ = roots(config, G)
        return pool.PoolFinder(config, G, C, groups, prior,
                               keylib.planner(keylib.root(config.seed)))
    if config.method == "search":
        return SearchFinder(config, G, C, groups)
    if config.method == "distribution":
        return DistributionFinder(config, G, C, groups)
    raise ValueError(f"unknown method {config.method!r}; choose from {', '.join(METHODS)}")


class _PerUnit:
    """Finders whose every evaluation belongs to a unit: nothing dataset-wide to prepare,
    and a unit they cannot fill stops the job (TargetNotReached) instead of a shortfall."""

    evaluations: dict[str, int] = {}  # every evaluation belongs to a unit
    short: dict[int, int] = {}  # a unit that cannot be filled stops the job instead
    best: dict[str, dict[str, float]] = {}

    def prepare(self, workdir: str, log) -> None:
        del workdir, log

    def covers(self, unit: Unit) -> bool:
        del unit
        return True


class SearchFinder(_PerUnit):
    """The fused search engine over a step's units (see module docstring)."""


    def __init__(self, config: ml_collections.ConfigDict, G, C, groups: list[str]):
        self.config, self.G, self.C, self.groups = config, G, C, groups
        self.engine = builder.build(builder.Settings.from_config(
            config, num_searches=config.units_per_step * config.searches_per_unit), G, C)
        self.latent_space = "wplus" if self.engine.space.name == "wplus" else "w"
        self.targets = [attributes.parse_target(g, C.schema) for g in groups]
        self.prior, self.units_root = roots(config, G)
        self.mesh, (self.g_state, self.c_state, self.prior_dev) = eng_lib.place(
            self.engine.num_searches, (G.state, C.state, self.prior), jax.local_devices())

    def find(self, units: list[Unit]) -> list[Found]:
        cfg, eng = self.config, self.engine
        spu = cfg.searches_per_unit
        slots = units + [units[-1]] * (cfg.units_per_step - len(units))
        targets = attributes.stack_targets([self.targets[u.group] for u in slots
                                            for _ in range(spu)])
        keys = jnp.concatenate([jax.random.split(jax.random.fold_in(self.units_root, u.id),
                                                 spu) for u in slots])
        if self.mesh is not None:
            targets, keys = eng_lib.shard((targets, keys), self.mesh)
        args = (self.g_state, self.c_state, self.prior_dev, targets, keys)
        state = eng.init(*args)
        gens = 1
        while True:
            taken = [self._take(state, j, u) for j, u in enumerate(units)]
            if all(len(t[0]) == u.size for t, u in zip(taken, units)):
                break
            if gens >= cfg.search.max_generations:
                raise TargetNotReached(self._short_report(state, units, taken))
            state, _ = eng.run(*args, state)
            gens += eng.generations
        evaluated = np.asarray(jax.device_get(state.evaluated))
        found = []
        for j, (u, search) in enumerate(taken):
            ws = np.asarray(spaces.to_ws(eng.space, self.G.graphdef, self.G.state, self.prior,
                                         jnp.asarray(u), cfg.truncation_psi))
            found.append(Found(ws, u if eng.space.name == "z" else None, search,
                               {"candidates": int(evaluated[j * spu:(j + 1) * spu].sum()),
                                "generations": gens}))
        return found

    def _take(self, state, j: int, unit: Unit) -> tuple[np.ndarray, np.ndarray]:
        spu = self.config.searches_per_unit
        sub = jax.tree.map(lambda x: x[j * spu:(j + 1) * spu], state)
        u, search, _, _ = readout.collect(sub, self.engine.space, self.engine.duplicate_radius,
                                          unit.size, self.engine.feature_radius)
        return u, search

    def _short_report(self, state, units, taken) -> str:
        spu = self.config.searches_per_unit
        best = np.asarray(jax.device_get(state.best_masses))
        parts = []
        for j, (u, t) in enumerate(zip(units, taken)):
            if len(t[0]) < u.size:
                b = best[j * spu:(j + 1) * spu].max(axis=0)
                probs = ", ".join(f"{a.name} {p:.3f}" for a, p in
                                  zip(self.C.schema.attributes, b))
                parts.append(f"unit {u.id} ({self.groups[u.group]}): {len(t[0])}/{u.size} "
                             f"accepted, best target probability {probs}")
        return (f"search.max_generations ({self.config.search.max_generations}) reached; "
                + "; ".join(parts))


class DistributionFinder(_PerUnit):
    """Verified draws from the fitted per-group mixtures (see module docstring)."""


    def __init__(self, config: ml_collections.ConfigDict, G, C, groups: list[str]):
        from jaxfair.distribution import draw as dd  # only this method needs it
        from jaxfair.distribution import gmm as gmmlib

        self._dd, self._gmm = dd, gmmlib
        dc = config.distribution
        self.config, self.G, self.C, self.groups = config, G, C, groups
        self.sampler = dd.sampler(dc.workdir, dc.batch_size)
        fitted = self.sampler.fitted
        same = os.path.normpath  # paths as written in the config and in the fit's meta
        if same(fitted.meta["generator"]) != same(config.generator) or \
                same(fitted.meta["classifier"]) != same(config.classifier):
            raise ValueError(f"the distribution model in {dc.workdir} was fitted on "
                             f"{fitted.meta['generator']} / {fitted.meta['classifier']}, not on "
                             f"{config.generator} / {config.classifier}")
        self.index = [dd.group_index(g, C.schema, fitted.groups) for g in groups]
        self.targets = [attributes.parse_target(g, C.schema) for g in groups]
        self.latent_space = "w"
        self.prior, self.units_root = roots(config, G)

    def find(self, units: list[Unit]) -> list[Found]:
        return [self._unit(u) for u in units]

    def _unit(self, unit: Unit) -> Found:
        s, dc = self.sampler, self.config.distribution
        mixture = self._gmm.select(s.fitted.mixtures, self.index[unit.group])
        key = jax.random.fold_in(self.units_root, unit.id)
        kept, batch_of, drawn, b = np.zeros((0, self.G.config.w_dim), np.float32), [], 0, 0
        while len(kept) < unit.size:
            if drawn >= dc.max_draw_factor * unit.size:
                raise TargetNotReached(
                    f"unit {unit.id} ({self.groups[unit.group]}): {len(kept)}/{unit.size} "
                    f"distinct samples met threshold {self.config.threshold} after {drawn} "
                    f"draws (distribution.max_draw_factor {dc.max_draw_factor})")
            w, _, _, mass, _ = jax.device_get(s.step(
                s.G.state, s.C.state, s.fitted.ae_state, mixture, self.targets[unit.group],
                jax.random.fold_in(key, b)))
            drawn += len(w)
            cand = np.concatenate([kept, w[mass >= self.config.threshold]])
            # earlier kept rows stay novel: only new rows can be dropped
            novel = identity.first_distinct(
                identity.to_prior_units(cand, self.prior.w_avg, self.prior.w_std),
                self.config.identity_radius)
            batch_of += [b] * int(novel[len(kept):].sum())
            kept = cand[novel]
            b += 1
        kept, batch_of = kept[:unit.size], np.asarray(batch_of[:unit.size])
        ws = np.broadcast_to(kept[:, None], (len(kept), self.G.config.num_ws, kept.shape[1]))
        return Found(np.ascontiguousarray(ws, np.float32), None, batch_of,
                     {"candidates": drawn, "generations": b})
