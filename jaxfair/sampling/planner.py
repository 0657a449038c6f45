"""The planner: every group's identities at the fewest evaluations, distributed as the
generator's own faces of that group.

Rounds, each deterministic given (config, weights, round index):

  stream   while some unfilled group is cheapest to fill by the shared stream: K batches of
           prior samples, rendered and judged for every group at once; each accepted face
           joins its group (binned rejection sampling: exact draws).
  chains   groups that the planner has switched to chains: all their chains advance
           ``chain_steps`` steps in one fused call (chains.py, exact stationary
           distribution: the generator restricted to the group); states are kept every
           ``thin`` steps, thin from the chains' measured autocorrelation.

The decision, each round, from measured numbers only: with ``need_g`` identities missing,
stream yield ``y_g`` (accepted / streamed so far) and chain cost ``c_g`` (chain evaluations
per kept identity, measured once a group's chains ran; before that the mean of the measured
groups, or ``chain_cost_guess``), filling the set S of groups by the stream costs
``max_{g in S} need_g / y_g`` more stream samples and the rest ``sum need_g c_g``; S is the
prefix (in order of need_g / y_g) that minimises the sum; the others run chains, if they have
a face to start from. The choice is made again every round from the latest measurements.
Every face joins its group only if it is not within ``identity_radius`` of one already there
(``jaxfair.identity``: W in prior units, the rule the manifest's cross-unit check applies).

The state after every round is a plain dict of arrays: ``save``/``load`` checkpoint it, and a
resumed run continues byte-identically.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair import identity
from jaxfair.judge import attributes, sizing
from jaxfair.models import stylegan2 as sg
from jaxfair.sampling import chains as chain_lib
from jaxfair.sampling import stream as stream_lib
from jaxfair.sampling.policy import Settings, allocate, assign_slots, plan_cost, stream_groups


class Planner:
    """The planner's compiled steps and its host loop (see module docstring)."""

    def __init__(self, settings: Settings, G: sg.Generator, C, judge: stream_lib.Judge,
                 groups: list[str], w_std: float, root: jax.Array,
                 budget_bytes: int | None = None):
        """``budget_bytes``: memory budget of one step call; the stream step and the chains
        then run micro-batches within it (``sizing.size_step``, sized at their first use,
        ``sizes``); None: the configured batches as they are."""
        self.s, self.G, self.C, self.judge = settings, G, C, judge
        self.budget_bytes = budget_bytes
        self._sized: dict[str, sizing.Sized] = {}
        self.groups = groups
        self.targets_list = [attributes.parse_target(g, C.schema) for g in groups]
        self.targets = attributes.stack_targets(self.targets_list)
        # Columns of the masses each group constrains (the others are 1 by definition).
        self.constrained = [
            [i for i, a in enumerate(C.schema.attributes) if not np.asarray(t.masks[a.name]).all()]
            for t in self.targets_list]
        # Span width: an attribute of K classes moves along at most K - 1 directions.
        sizes = [len(a.classes) - 1 for a in C.schema.attributes]
        self.k = max(1, max(sum(sizes[i] for i in c) for c in self.constrained))
        self.w_std = float(w_std)
        self.stream_root = jax.random.fold_in(root, 0)
        self.chain_root = jax.random.fold_in(root, 1)
        psi, gd = judge.psi, G.graphdef
        self._map = jax.jit(lambda gs, z: sg.mapping(gd, gs, z, psi)[:, 0])

    # Compiled steps -------------------------------------------------------------------

    def step_factories(self) -> list[tuple[str, str, int, Callable]]:
        """(name, config key, configured batch, micro -> (step, abstract arguments)) of the
        planner's batched steps: what ``--dry_run`` sizes and the run uses."""
        out = [("stream", "planner.stream_batch", self.s.stream_batch,
                stream_lib.step_factory(self.judge, self.s.stream_batch, self.targets))]
        if self.s.num_chains:
            c = self.s.num_chains
            targets = attributes.stack_targets([self.targets_list[i % len(self.groups)]
                                                for i in range(c)])
            out.append(("chains", "planner.num_chains", c, chain_lib.run_factory(
                self.judge.accepts, self.s.chain_steps, self.G.state, self.C.state, targets,
                self.G.config.z_dim, self.k)))
        return out

    def _step(self, name: str):
        """The named step, sized within the budget at its first use (or as configured)."""
        if name not in self._sized:
            _, _, configured, factory = next(f for f in self.step_factories() if f[0] == name)
            if self.budget_bytes is None:
                self._sized[name] = factory(configured)[0]
            else:
                self._sized[name] = sizing.size_step(factory, self.budget_bytes, configured,
                                                     name)
        return self._sized[name]

    @property
    def sizes(self) -> list[sizing.Sized]:
        """The steps sized so far (empty without a budget)."""
        return [v for v in self._sized.values() if isinstance(v, sizing.Sized)]

    def stream_step(self, *args):
        return self._step("stream")(*args)

    def chain_run(self, *args):
        return self._step("chains")(*args)

    # State ----------------------------------------------------------------------------

    def initial_state(self) -> dict:
        G, D, A = len(self.groups), self.G.config.z_dim, len(self.C.schema.attributes)
        s = {
            "round": 0, "stream_batches_done": 0, "stream_evaluations": 0,
            "chain_evaluations": 0,
            "stream_hits": np.zeros(G, np.int64),
            "chain_mode": np.zeros(G, bool), "free_step": np.full(G, self.s.beta_init),
            "thin": np.ones(G, np.int64), "period": np.full(G, 2, np.int64),
            "chain_group_evals": np.zeros(G, np.int64),
            "chain_kept": np.zeros(G, np.int64), "rho": np.zeros((G, 2)),
            "q": np.zeros((G, D, self.k), np.float32), "seed_next": np.zeros(G, np.int64),
            "fit_z": np.zeros((0, D), np.float32), "fit_masses": np.zeros((0, G, A),
                                                                           np.float32),
            "chain_z": np.zeros((self.s.num_chains, D), np.float32),
            "chain_group": np.full(self.s.num_chains, -1, np.int64),
            "chain_since": np.zeros(self.s.num_chains, np.int64),
            "best": np.zeros((G, A), np.float32),
        }
        for g in range(G):
            s[f"pool_z_{g}"] = np.zeros((0, D), np.float32)
            s[f"pool_w_{g}"] = np.zeros((0, self.G.config.w_dim), np.float32)
            s[f"pool_src_{g}"] = np.zeros(0, np.int64)  # 0: stream, 1 + c: chain c
        return s

    def evaluations(self, s: dict) -> int:
        return int(s["stream_evaluations"]) + int(s["chain_evaluations"])

    def counts(self, s: dict) -> np.ndarray:
        return np.array([len(s[f"pool_z_{g}"]) for g in range(len(self.groups))])

    # Adding faces -----------------------------------------------------------------------

    def _add(self, s: dict, g: int, z: np.ndarray, src: int) -> None:
        """Adds faces z [n, D] to group g in order, skipping those within the identity
        radius of one already there (``jaxfair.identity``, W in prior units), up to quota."""
        room = self.s.quota - len(s[f"pool_z_{g}"])
        if len(z) == 0 or room <= 0:
            return
        w = np.asarray(self._map(self.G.state, jnp.asarray(z)))
        pool = s[f"pool_w_{g}"]
        keep = identity.first_distinct(
            identity.to_prior_units(w, 0.0, self.w_std), self.s.identity_radius,
            identity.to_prior_units(pool, 0.0, self.w_std) if len(pool) else None, limit=room)
        s[f"pool_z_{g}"] = np.concatenate([s[f"pool_z_{g}"], z[keep]])
        s[f"pool_w_{g}"] = np.concatenate([s[f"pool_w_{g}"], w[keep]])
        s[f"pool_src_{g}"] = np.concatenate([s[f"pool_src_{g}"], np.full(keep.sum(), src)])

    # Rounds -----------------------------------------------------------------------------

    def _chain_costs(self, s: dict) -> np.ndarray:
        """[G] chain evaluations per kept identity: measured, else the mean of the measured
        groups, else the guess."""
        measured = s["chain_kept"] > 0
        cost = np.where(measured, s["chain_group_evals"] / np.maximum(s["chain_kept"], 1), 0.0)
        default = cost[measured].mean() if measured.any() else self.s.chain_cost_guess
        return np.where(measured, cost, default)

    def estimate(self, s: dict) -> int:
        """Evaluations the run will have made when every group is full (or the budget is
        spent), from the latest measured yields and chain costs."""
        need = self.s.quota - self.counts(s)
        n = max(1, s["stream_evaluations"])
        yields = (s["stream_hits"] + 0.5) / (n + 1.0)
        if self.s.num_chains:
            _, left = plan_cost(need, yields, self._chain_costs(s), self.counts(s) > 0)
        else:
            left = float(np.max(np.where(need > 0, need / yields, 0.0)))
        done = self.evaluations(s)
        return int(min(self.s.max_evaluations, done + math.ceil(left)))

    def _decide(self, s: dict) -> np.ndarray:
        need = self.s.quota - self.counts(s)
        n = max(1, s["stream_evaluations"])
        yields = (s["stream_hits"] + 0.5) / (n + 1.0)
        cost = self._chain_costs(s)
        startable = self.counts(s) > 0
        if not self.s.num_chains:
            return need > 0
        stream = stream_groups(need, yields, cost, startable)
        # Revised every round from the latest measurements: a group whose chains turn out
        # dearer than the stream goes back to it.
        s["chain_mode"] = (need > 0) & ~stream & startable
        return stream

    def _stream_round(self, s: dict, progress: Callable[[int, int], None]) -> None:
        filled = self.counts(s) >= self.s.quota
        for _ in range(self.s.stream_batches):
            b = int(s["stream_batches_done"])
            z, ok, masses = jax.device_get(self.stream_step(
                self.G.state, self.C.state, jax.random.fold_in(self.stream_root, b),
                self.targets))
            s["stream_batches_done"] = b + 1
            s["stream_evaluations"] += len(z)
            grp = np.asarray(stream_lib.assign(ok))
            s["stream_hits"] += np.bincount(grp[grp >= 0], minlength=len(self.groups))
            s["best"] = np.maximum(s["best"], masses.max(axis=1))
            room = self.s.fit_samples - len(s["fit_z"])
            if room > 0:
                s["fit_z"] = np.concatenate([s["fit_z"], z[:room]])
                s["fit_masses"] = np.concatenate(
                    [s["fit_masses"], np.moveaxis(masses, 1, 0)[:room]])
            for g in range(len(self.groups)):
                if not filled[g]:
                    self._add(s, g, z[grp == g], 0)
            progress(self.evaluations(s), self.estimate(s))

    def _directions(self, s: dict, g: int) -> np.ndarray:
        cols = self.constrained[g]
        q = np.zeros((self.G.config.z_dim, self.k), np.float32)
        if not cols or len(s["fit_z"]) < 2:
            return q
        # Every class of a constrained attribute (each group's mass on it is one class's
        # probability, or a union's): a middle class ("medium") is a band whose own log-odds
        # is not monotone along its axis, its neighbours' are.
        m = s["fit_masses"][:, :, cols].reshape(len(s["fit_z"]), -1).astype(np.float64)
        m = np.unique(np.clip(m, 1e-6, 1 - 1e-6), axis=1)
        basis = chain_lib.directions(s["fit_z"], np.log(m) - np.log1p(-m))[:, :self.k]
        q[:, :basis.shape[1]] = basis
        return q

    def _span_fit(self, s: dict, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Proposal (mu [k], chol [k, k]) of group g's constrained coordinates."""
        q = s["q"][g]
        k_eff = int(np.sum(np.linalg.norm(q, axis=0) > 0))
        return chain_lib.fit_span(s[f"pool_z_{g}"] @ q, self.k, k_eff)

    def _chain_round(self, s: dict) -> None:
        counts = self.counts(s)
        need = self.s.quota - counts
        eligible = s["chain_mode"] & (need > 0) & (counts > 0)
        alloc = allocate(need, eligible, self.s.num_chains)
        # No more chains than a group can use this round (a kept identity costs about
        # cost_g steps), and the call only as wide as the live chains need (powers of two:
        # a few traces at most), so the last identities do not pay for idle chains.
        useful = np.ceil(need * self._chain_costs(s) / self.s.chain_steps).astype(int)
        alloc = np.minimum(alloc, np.maximum(useful, 1) * (alloc > 0))
        if alloc.sum() == 0:
            return
        slots = assign_slots(s["chain_group"], alloc)
        width = min(self.s.num_chains, 1 << int(np.max(np.nonzero(slots >= 0)[0])).bit_length())
        for g in np.nonzero(eligible & ~np.any(s["q"] != 0, axis=(1, 2)))[0]:
            s["q"][g] = self._directions(s, g)
        for c in range(self.s.num_chains):  # (re)start chains whose group changed
            g = slots[c]
            if g >= 0 and g != s["chain_group"][c]:
                pool = s[f"pool_z_{g}"]
                s["chain_z"][c] = pool[s["seed_next"][g] % len(pool)]
                s["seed_next"][g] += 1
                s["chain_since"][c] = 0
        s["chain_group"] = slots
        # Idle slots within the call's width run chain 0's state again, discarded.
        live = slots[:width] >= 0
        g_of = np.where(live, slots[:width], slots[0])
        z0 = np.where(live[:, None], s["chain_z"][:width], s["chain_z"][0])
        targets = attributes.stack_targets([self.targets_list[g] for g in g_of])
        # Each group's constrained coordinates are proposed from a Gaussian fitted to its
        # faces so far (refitted every round; exactness never depends on the fit).
        fits = {g: self._span_fit(s, g) for g in np.unique(g_of)}
        mu = np.stack([fits[g][0] for g in g_of])
        chol = np.stack([fits[g][1] for g in g_of])
        z, hist, moved = jax.device_get(self.chain_run(
            self.G.state, self.C.state, jax.random.fold_in(self.chain_root, s["round"]),
            targets, jnp.asarray(s["q"][g_of]), jnp.asarray(mu), jnp.asarray(chol),
            jnp.asarray(s["free_step"][g_of], jnp.float32),
            jnp.asarray(s["period"][g_of], jnp.int32), jnp.asarray(z0)))
        s["chain_z"][:width] = np.where(live[:, None], z, s["chain_z"][:width])
        s["chain_evaluations"] += hist.shape[0] * hist.shape[1]
        for g in np.nonzero(alloc)[0]:
            mine = np.nonzero(slots == g)[0]
            free = np.asarray(chain_lib.is_free_move(np.arange(hist.shape[0]),
                                                     s["period"][g]))
            # Robbins-Monro on the free moves' log step size, towards the target rate.
            acc = float(moved[free][:, mine].mean()) if free.any() else self.s.target_acceptance
            s["free_step"][g] = float(np.clip(s["free_step"][g] * math.exp(
                2.0 * (acc - self.s.target_acceptance)), 0.01, 1.0))
            q = s["q"][g]
            h = hist[:, mine].astype(np.float64)
            inside = h @ q.astype(np.float64)  # [T, c, k] constrained coordinates
            outside = h - inside @ q.T.astype(np.float64)
            # Stationary variances from outside the chains: the prior's 1 off the span, the
            # group's exact stream draws on it (all its faces when those are too few).
            src = s[f"pool_src_{g}"]
            faces = s[f"pool_z_{g}"][src == 0] if np.sum(src == 0) >= 8 else s[f"pool_z_{g}"]
            drawn = faces @ q.astype(np.float64)
            var_in = float(np.mean(np.var(drawn, axis=0))) if len(drawn) >= 2 else None
            # Off the span the prior's variance is 1 per direction: (D - k) / D per
            # coordinate of the projection.
            k_eff = float(np.sum(np.linalg.norm(q, axis=0) > 0))
            s["rho"][g] = (chain_lib.lag1_autocorrelation(inside, var_in),
                           chain_lib.lag1_autocorrelation(outside, 1.0 - k_eff / q.shape[0]))
            s["period"][g], s["thin"][g] = chain_lib.schedule(
                *s["rho"][g], float(free.mean()), self.s.rho_max, self.s.max_thin)
            s["chain_group_evals"][g] += hist.shape[0] * len(mine)
        for t in range(hist.shape[0]):  # keep states every thin steps, step-major
            s["chain_since"] += 1
            for c in np.nonzero(live)[0]:
                g = slots[c]
                if s["chain_since"][c] >= s["thin"][g]:
                    s["chain_since"][c] = 0
                    before = len(s[f"pool_z_{g}"])
                    self._add(s, g, hist[t, c][None], 1 + c)
                    s["chain_kept"][g] += len(s[f"pool_z_{g}"]) - before

    def run(self, state: dict | None = None, checkpoint: Callable[[dict], None] | None = None,
            log: Callable[[str], None] = print,
            progress: Callable[[int, int], None] | None = None) -> dict:
        """Rounds until every group has its quota or the budget is spent; returns the state
        (``counts(state)`` below the quota: a shortfall). ``progress(evaluations done,
        estimated at the end)`` is called before the first round and after every stream
        batch and chain round."""
        s = self.initial_state() if state is None else state
        progress = progress or (lambda done, total: None)
        progress(self.evaluations(s), self.estimate(s))
        while (self.counts(s) < self.s.quota).any():
            if self.evaluations(s) >= self.s.max_evaluations:
                break
            stream = self._decide(s)
            if stream.any():
                self._stream_round(s, progress)
            if self.s.num_chains and s["chain_mode"].any():
                self._chain_round(s)
                progress(self.evaluations(s), self.estimate(s))
            s["round"] += 1
            log(self.progress(s))
            if checkpoint is not None:
                checkpoint(s)
        return s

    def progress(self, s: dict) -> str:
        counts = self.counts(s)
        return (f"round {s['round']}: {self.evaluations(s)} evaluations "
                f"(stream {s['stream_evaluations']}, chains {s['chain_evaluations']}); "
                f"identities {int(counts.sum())}/{self.s.quota * len(counts)}; chains for "
                + (", ".join(f"{self.groups[g]} (thin {s['thin'][g]}, period {s['period'][g]}, "
                             f"free step {s['free_step'][g]:.2f})"
                             for g in np.nonzero(s['chain_mode'])[0]) or "none"))


def save(path: str, s: dict) -> None:
    """Writes the planner state atomically (temp file, then rename)."""
    import os
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in s.items()})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str) -> dict:
    """Reads a state written by ``save`` (plain arrays only: allow_pickle is off)."""
    with np.load(path, allow_pickle=False) as f:
        s = {k: f[k] for k in f.files}
    for k in ("round", "stream_batches_done", "stream_evaluations", "chain_evaluations"):
        s[k] = int(s[k])
    return s
