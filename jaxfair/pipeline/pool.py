"""The planner as a finder: one search for every group (``sampling/planner.py``), then units.

``prepare`` runs the planner once per dataset, before any unit: process 0 computes it,
checkpointing its state to ``DIR/planner.npz`` (``PLANNER_STATE``) after every round (a
killed run resumes from the last round, byte-identically: the rounds are deterministic),
other processes wait at a barrier and read the finished state. ``find(units)`` then hands
every unit its slice of its group's identities: unit ``index`` of group g takes identities
``[index * per_unit, index * per_unit + size)`` in the order the planner accepted them.

Evaluations of the planner are the dataset's, not a unit's: ``evaluations`` reports them for
the manifest (stream, gated).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from jaxfair.dataset.format import PLANNER_STATE
from jaxfair.errors import JaxfairError
from jaxfair.pipeline import distributed
from jaxfair.pipeline.plan import Unit
from jaxfair.sampling import planner as planner_lib
from jaxfair.sampling import policy
from jaxfair.sampling import stream as stream_lib
from jaxfair.search import objective as obj


class Shortfall(JaxfairError, RuntimeError):
    """A unit asks for identities the planner did not find."""


def settings(config: ml_collections.ConfigDict, num_groups: int) -> policy.Settings:
    """Planner settings of a generate config (quota, identity radius and the budget of
    ``num_groups`` groups from the job)."""
    p = config.planner
    quota = config.identities_per_group
    return policy.Settings(
        quota=quota, stream_batch=p.stream_batch, stream_batches=p.stream_batches,
        guided_batch=p.guided_batch, gate_margin=p.gate_margin,
        gate_min_samples=p.gate_min_samples,
        max_evaluations=int(p.max_evaluations_per_identity * quota * num_groups),
        identity_radius=config.identity_radius, fit_samples=p.fit_samples)


class PoolFinder:
    """Identities from the planner's per-group pools (see module docstring)."""

    latent_space = "w"

    def __init__(self, config: ml_collections.ConfigDict, G, C, groups: list[str],
                 prior, root: jax.Array, budget_bytes: int | None = None):
        """``root``: the planner's key (``keys.planner``); ``budget_bytes``: the memory
        budget of one step (``Planner``)."""
        self.config, self.G, self.C, self.groups = config, G, C, groups
        self.prior = prior
        s = settings(config, len(groups))
        judge = stream_lib.Judge(G, C, obj.Objective(threshold=config.threshold,
                                                     mode=config.search.accept_mode),
                                 config.truncation_psi, config.noise_mode,
                                 config.planner.score_resolution or None)
        self.planner = planner_lib.Planner(s, G, C, judge, groups,
                                           float(np.asarray(prior.w_std)),
                                           root, budget_bytes)
        self.state: dict | None = None
        self.progress = None  # (what, done, estimated total) -> None, set by the run

    @property
    def sizes(self) -> list:
        """The planner's steps sized within the memory budget (``sizing.Sized``)."""
        return self.planner.sizes

    def step_factories(self) -> list:
        """(name, config key, configured batch, factory) of the planner's batched steps."""
        return self.planner.step_factories()

    @property
    def evaluations(self) -> dict[str, int]:
        s = self.state
        return {"stream": int(s["stream_evaluations"]), "gated": int(s["gated_evaluations"])}

    def prepare(self, workdir: str, log: Callable[[str], None]) -> None:
        """Runs (or resumes, or reads) the planner. Groups it could not fill within its
        budget are listed in ``short`` (and logged); their units that the found identities
        cover are still made, so every reachable group finishes."""
        path = os.path.join(workdir, PLANNER_STATE)
        if jax.process_index() == 0:
            state = planner_lib.load(path) if os.path.exists(path) else None
            if state is not None:
                log(f"planner: resuming after round {state['round']} "
                    f"({self.planner.evaluations(state)} evaluations)")
            report = self.progress
            state = self.planner.run(
                state, lambda s: planner_lib.save(path, s), log,
                None if report is None else lambda d, t: report("planner evaluations", d, t))
            planner_lib.save(path, state)
        distributed.barrier("planner")
        self.state = planner_lib.load(path)
        counts = self.planner.counts(self.state)
        quota = self.planner.s.quota
        self.short = {int(g): int(quota - counts[g]) for g in np.nonzero(counts < quota)[0]}
        best = self.state["best"]
        self.best = {self.groups[g]: {a.name: round(float(best[g, i]), 4) for i, a in
                                      enumerate(self.C.schema.attributes)} for g in self.short}
        for g in self.short:
            log(f"planner: budget ({self.planner.s.max_evaluations} evaluations) spent with "
                f"{self.groups[g]} at {counts[g]}/{quota}; best target probabilities "
                f"{self.best[self.groups[g]]}")

    def covers(self, unit: Unit) -> bool:
        """The planner found every identity of ``unit``."""
        n = len(self.state[f"pool_z_{unit.group}"])
        return unit.index * self.config.identities_per_unit + unit.size <= n

    def find(self, units: list[Unit]) -> list:
        from jaxfair.pipeline.finders import Found  # finders imports this module

        per_unit = self.config.identities_per_unit
        out = []
        for u in units:
            rows = slice(u.index * per_unit, u.index * per_unit + u.size)
            z = self.state[f"pool_z_{u.group}"][rows]
            w = self.state[f"pool_w_{u.group}"][rows]
            if len(z) < u.size:
                raise Shortfall(f"unit {u.id} ({self.groups[u.group]}) needs identities "
                                f"{rows.start}..{rows.stop - 1}, the planner found {len(z)} "
                                f"there (top-up units beyond the quota are not planned)")
            ws = np.broadcast_to(w[:, None], (len(w), self.G.config.num_ws, w.shape[1]))
            out.append(Found(np.ascontiguousarray(ws, np.float32), z,
                             self.state[f"pool_src_{u.group}"][rows],
                             {"candidates": 0, "generations": 0}))
        return out
