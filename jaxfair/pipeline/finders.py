"""How a step of work units finds its identities: the fused search or a fitted distribution.

``finder.find(units)`` returns one ``Found`` per unit (``size`` distinct latents of the
unit's group), a pure function of (config, weights, unit id), or None for a unit whose
budget ran out (the unit is not made; its group is listed in ``short`` with the best target
probabilities reached, and the job goes on with every other unit):

  search        ``units_per_step x searches_per_unit`` fused searches (``Engine.run``
                chunks), every unit's searches for its own group with keys
                ``fold_in(units_root, id)``; a short step is padded with copies of its last
                unit so every step has the same shape (one trace). A unit takes its first
                ``size`` distinct accepted latents in (generation, search, slot) order: the
                archives only append, so running more generations than a unit needed never
                changes what it takes (a larger ``search.max_generations`` fills a short
                unit and leaves the others as they were).
  distribution  the unit's group mixture (``python -m jaxfair.sample fit``), decoded to W,
                rendered and classified in batches with keys ``fold_in(fold_in(units_root,
                id), batch)``; the first ``size`` samples that meet the threshold and are
                not near-duplicates of earlier ones are taken.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxfair import identity
from jaxfair import keys as keylib
from jaxfair.judge import attributes, sizing
from jaxfair.pipeline.plan import Unit
from jaxfair.search import builder, objective, readout, spaces
from jaxfair.search import engine as eng_lib

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
    sizes: list  # steps sized within the memory budget (sizing.Sized)
    # (what, done, estimated total) of the current find, for progress lines; None: silent
    progress: Callable[[str, int, int | None], None] | None

    def prepare(self, workdir: str, log) -> None: ...  # before any unit

    def covers(self, unit: Unit) -> bool: ...  # whether find() can make this unit

    def find(self, units: list[Unit]) -> list[Found | None]: ...  # None: a short unit


def roots(config: ml_collections.ConfigDict, G) -> tuple[spaces.Prior, jax.Array]:
    """(prior statistics of G, root key of the unit streams) of a run."""
    root = keylib.root(config.seed)
    return spaces.estimate_prior(G, keylib.prior(root)), keylib.units(root)


def create(config: ml_collections.ConfigDict, G, C, groups: list[str],
           budget_bytes: int | None = None) -> Finder:
    """The finder of ``config.method``; ``budget_bytes``: memory budget of one step call
    (the planner's stream and gated steps, the distribution's draws run micro-batches within
    it; None: the configured batches)."""
    if config.method == "planner":
        from jaxfair.pipeline import pool

        prior, _ = roots(config, G)
        return pool.PoolFinder(config, G, C, groups, prior,
                               keylib.planner(keylib.root(config.seed)), budget_bytes)
    if config.method == "search":
        return SearchFinder(config, G, C, groups, budget_bytes)
    if config.method == "distribution":
        return DistributionFinder(config, G, C, groups, budget_bytes)
    raise ValueError(f"unknown method {config.method!r}; choose from {', '.join(METHODS)}")


class _PerUnit:
    """Finders whose every evaluation belongs to a unit: nothing dataset-wide to prepare.

    A unit whose budget runs out (``search.max_generations``, ``distribution.
    max_draw_factor``) is not made: ``find`` gives None for it, its group joins ``short``
    (with the best target probabilities reached) and ``covers`` leaves it out, so every
    other unit finishes; a rerun with a larger budget recomputes its step (finished units
    are untouched, the others take the same prefix of their longer search).
    """

    evaluations: dict[str, int] = {}  # every evaluation belongs to a unit
    sizes: list = []

    def _init_short(self) -> None:
        self.short: dict[int, int] = {}
        self.best: dict[str, dict[str, float]] = {}
        self.failed: set[int] = set()
        self.progress = None
        self.log: Callable[[str], None] = lambda line: None

    def prepare(self, workdir: str, log) -> None:
        del workdir
        self.log = log

    def covers(self, unit: Unit) -> bool:
        return unit.id not in self.failed

    def _short_unit(self, unit: Unit, got: int, best: np.ndarray, why: str) -> None:
        """Records a unit that its budget could not fill (best [A] target probabilities)."""
        name = self.groups[unit.group]
        self.failed.add(unit.id)
        self.short[unit.group] = self.short.get(unit.group, 0) + unit.size
        old = self.best.get(name, {})
        self.best[name] = {a.name: round(max(float(p), old.get(a.name, 0.0)), 4)
                           for a, p in zip(self.C.schema.attributes, best)}
        self.log(f"unit {unit.id} ({name}): {got}/{unit.size} identities after {why}; best "
                 f"target probabilities {self.best[name]}; the other units go on")


class SearchFinder(_PerUnit):
    """The fused search engine over a step's units (see module docstring)."""


    def __init__(self, config: ml_collections.ConfigDict, G, C, groups: list[str],
                 budget_bytes: int | None = None):
        """``budget_bytes``: memory budget of one ``Engine.run`` call; the engine then scores
        its candidates in the largest micro-batch within it, ``search.eval_batch`` (0: the
        whole batch) at most (``engine.size_run``, at the first step). Searches sharded
        over several devices, and None, keep the configured ``search.eval_batch``."""
        self.config, self.G, self.C, self.groups = config, G, C, groups
        self._init_short()
        self.engine = builder.build(builder.Settings.from_config(
            config, num_searches=config.units_per_step * config.searches_per_unit), G, C)
        self.latent_space = "wplus" if self.engine.space.name == "wplus" else "w"
        self.targets = [attributes.parse_target(g, C.schema) for g in groups]
        self.prior, self.units_root = roots(config, G)
        self.mesh, (self.g_state, self.c_state, self.prior_dev) = eng_lib.place(
            self.engine.num_searches, (G.state, C.state, self.prior), jax.local_devices())
        self.budget_bytes = budget_bytes
        self._run: Callable | None = None  # the engine's run step, sized at the first step

    def _step_args(self, units: list[Unit]) -> tuple:
        """(targets [S], keys [S]) of a step's searches: ``searches_per_unit`` per unit, a
        short step padded with copies of its last unit."""
        spu = self.config.searches_per_unit
        slots = units + [units[-1]] * (self.config.units_per_step - len(units))
        targets = attributes.stack_targets([self.targets[u.group] for u in slots
                                            for _ in range(spu)])
        keys = jnp.concatenate([jax.random.split(jax.random.fold_in(self.units_root, u.id),
                                                 spu) for u in slots])
        return targets, keys

    def step_factories(self) -> list[tuple[str, str, int, Callable]]:
        """(name, config key, configured batch, micro -> (step, abstract arguments)) of the
        search's batched step: ``Engine.run`` scoring S x P candidates per generation in
        micro-batches (``engine.run_factory``), what ``--dry_run`` sizes and the run uses."""
        units = [Unit(i, i % len(self.groups), 0, 1) for i in range(self.config.units_per_step)]
        return [("evaluate", "search.eval_batch", self.engine.eval_bound,
                 eng_lib.run_factory(self.engine, self.g_state, self.c_state, self.prior_dev,
                                     *self._step_args(units)))]

    def _run_step(self, args: tuple) -> Callable:
        """The engine's run (sized within the budget at the first step, or as configured);
        sizing may replace ``self.engine`` by its copy at the chosen micro-batch."""
        if self._run is None:
            if self.budget_bytes is None or self.mesh is not None:
                self._run = self.engine.run
            else:
                self._run = eng_lib.size_run(self.engine, self.budget_bytes, *args)
                self.engine = self._run.jitted.engine
        return self._run

    @property
    def sizes(self) -> list:
        return [self._run] if isinstance(self._run, sizing.Sized) else []

    def find(self, units: list[Unit]) -> list[Found | None]:
        cfg = self.config
        spu = cfg.searches_per_unit
        targets, keys = self._step_args(units)
        if self.mesh is not None:
            targets, keys = eng_lib.shard((targets, keys), self.mesh)
        args = (self.g_state, self.c_state, self.prior_dev, targets, keys)
        run = self._run_step(args)
        eng = self.engine
        state = eng.init(*args)
        gens = 1
        while True:
            taken = [self._take(state, j, u) for j, u in enumerate(units)]
            if all(len(t[0]) == u.size for t, u in zip(taken, units)):
                break
            if gens >= cfg.search.max_generations:
                break
            if self.progress is not None:
                self.progress("search evaluations", *self._estimate(state, units, taken, gens))
            state, _ = run(*args, state)
            gens += eng.generations
        evaluated = np.asarray(jax.device_get(state.evaluated))
        best = np.asarray(jax.device_get(state.best_masses))
        found = []
        for j, (unit, (u, search)) in enumerate(zip(units, taken)):
            if len(u) < unit.size:
                self._short_unit(unit, len(u), best[j * spu:(j + 1) * spu].max(axis=0),
                                 f"search.max_generations ({cfg.search.max_generations})")
                found.append(None)
                continue
            ws = np.asarray(spaces.to_ws(eng.space, self.G.graphdef, self.G.state, self.prior,
                                         jnp.asarray(u), cfg.truncation_psi))
            found.append(Found(ws, u if eng.space.name == "z" else None, search,
                               {"candidates": int(evaluated[j * spu:(j + 1) * spu].sum()),
                                "generations": gens}))
        return found

    def _estimate(self, state, units, taken, gens: int) -> tuple[int, int]:
        """(evaluations of this step so far, estimated at its end): generations until the
        slowest unit is full at its rate so far (max_generations while one has none)."""
        done = int(np.sum(jax.device_get(state.evaluated)))
        need = [self.config.search.max_generations if len(t[0]) == 0 else
                gens * u.size / len(t[0]) for t, u in zip(taken, units)]
        end = min(self.config.search.max_generations, max(need))
        return done, max(done, int(round(done * end / gens)))

    def _take(self, state, j: int, unit: Unit) -> tuple[np.ndarray, np.ndarray]:
        spu = self.config.searches_per_unit
        sub = jax.tree.map(lambda x: x[j * spu:(j + 1) * spu], state)
        u, search, _, _ = readout.collect(sub, self.engine.space, self.engine.duplicate_radius,
                                          unit.size, self.engine.feature_radius)
        return u, search


class DistributionFinder(_PerUnit):
    """Verified draws from the fitted per-group mixtures (see module docstring)."""


    def __init__(self, config: ml_collections.ConfigDict, G, C, groups: list[str],
                 budget_bytes: int | None = None):
        from jaxfair.distribution import draw as dd  # only this method needs it
        from jaxfair.distribution import gmm as gmmlib

        self._dd, self._gmm = dd, gmmlib
        dc = config.distribution
        self.config, self.G, self.C, self.groups = config, G, C, groups
        self._init_short()
        self.sampler = dd.sampler(dc.workdir, dc.batch_size, budget_bytes)
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

    @property
    def sizes(self) -> list:
        return [self.sampler.step] if isinstance(self.sampler.step, sizing.Sized) else []

    def find(self, units: list[Unit]) -> list[Found | None]:
        return [self._unit(u) for u in units]

    def _unit(self, unit: Unit) -> Found | None:
        s, dc = self.sampler, self.config.distribution
        mixture = self._gmm.select(s.fitted.mixtures, self.index[unit.group])
        key = jax.random.fold_in(self.units_root, unit.id)
        target = self.targets[unit.group]
        kept, batch_of, drawn, b = np.zeros((0, self.G.config.w_dim), np.float32), [], 0, 0
        best = np.zeros(len(self.C.schema.attributes))
        while len(kept) < unit.size:
            if drawn >= dc.max_draw_factor * unit.size:
                self._short_unit(unit, len(kept), best, f"{drawn} draws "
                                 f"(distribution.max_draw_factor {dc.max_draw_factor})")
                return None
            if self.progress is not None:
                self.progress("draws", drawn, int(dc.max_draw_factor * unit.size))
            w, _, probs, mass, _ = jax.device_get(s.step(
                s.G.state, s.C.state, s.fitted.ae_state, mixture, target,
                jax.random.fold_in(key, b)))
            best = np.maximum(best, np.asarray(
                objective.target_masses(probs, target, self.C.schema.names)).max(axis=0))
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
