"""The planner: every group's identities at the fewest evaluations, distributed as the
generator's own faces of that group.

Rounds, each deterministic given (config, weights, round index):

  stream   while some unfilled group is cheapest to fill by the shared stream: K batches of
           prior samples, rendered and judged for every group at once; each accepted face
           joins its group (binned rejection sampling: exact draws).
  gated    groups that the planner has switched to gated sampling: prior samples drawn
           until they fall inside the group's gate (``gates.py``: a region of w, tested
           without rendering, fitted to hold the whole group), then rendered and judged in
           one call for every such group; each accepted face joins the group it was drawn
           for (exact draws of the group inside its gate).

The decision, each round, from measured numbers only: with ``need_g`` identities missing,
stream yield ``y_g`` (accepted / streamed so far) and gated cost ``c_g`` (proposals per kept
identity: the stream's samples inside the gate per face of the group among them, pooled
with the gated rounds' own counts), filling the set S of groups by the stream costs
``max_{g in S} need_g / y_g`` more stream samples and the rest ``sum need_g c_g``; S is the
prefix (in order of need_g / y_g) that minimises the sum. A group without a gate yet (too
few stream samples pass its attributes, ``gate_min_samples``) stays with the stream. Every
face joins its group only if it is not within ``identity_radius`` of one already there
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
from jaxfair.sampling import gates as gate_lib
from jaxfair.sampling import stream as stream_lib
from jaxfair.sampling.policy import Settings, fill, plan_cost, proposals, stream_groups

# Prior candidates tested against the gates per chunk, and the most chunks of one round (a
# gate holding less than ~1e-6 of the prior leaves its group short that round).
CANDIDATE_CHUNK = 4096
MAX_CHUNKS = 256
# Rows of the mapping calls of the gates' fit (one compiled shape for any fit size).
MAP_CHUNK = 256


class Planner:
    """The planner's compiled steps and its host loop (see module docstring)."""

    def __init__(self, settings: Settings, G: sg.Generator, C, judge: stream_lib.Judge,
                 groups: list[str], w_std: float, root: jax.Array,
                 budget_bytes: int | None = None):
        """``budget_bytes``: memory budget of one step call; the stream and gated steps
        then run micro-batches within it (``sizing.size_step``, sized at their first use,
        ``sizes``); None: the configured batches as they are."""
        self.s, self.G, self.C, self.judge = settings, G, C, judge
        self.budget_bytes = budget_bytes
        self._sized: dict[str, sizing.Sized] = {}
        self.groups = groups
        self.targets_list = [attributes.parse_target(g, C.schema) for g in groups]
        self.targets = attributes.stack_targets(self.targets_list)
        self.w_std = float(w_std)
        self.stream_root = jax.random.fold_in(root, 0)
        self.gated_root = jax.random.fold_in(root, 1)
        psi, gd = judge.psi, G.graphdef
        self._map = jax.jit(lambda gs, z: sg.mapping(gd, gs, z, psi)[:, 0])
        # This round's gates and the standardisation of w they use (``_fit_gates``).
        self._gates: dict[int, gate_lib.Gate] = {}
        self._standard = None

    # Compiled steps -------------------------------------------------------------------

    def step_factories(self) -> list[tuple[str, str, int, Callable]]:
        """(name, config key, configured batch, micro -> (step, abstract arguments)) of the
        planner's batched steps: what ``--dry_run`` sizes and the run uses."""
        out = [("stream", "planner.stream_batch", self.s.stream_batch,
                stream_lib.step_factory(self.judge, self.s.stream_batch, self.targets))]
        if self.s.guided_batch:
            out.append(("gated", "planner.guided_batch", self.s.guided_batch,
                        stream_lib.judge_factory(self.judge, self.s.guided_batch,
                                                 self.targets)))
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

    def gated_step(self, *args):
        return self._step("gated")(*args)

    # State ----------------------------------------------------------------------------

    def initial_state(self) -> dict:
        G, D = len(self.groups), self.G.config.z_dim
        A = len(self.C.schema.attributes)
        P = sum(len(a.classes) for a in self.C.schema.attributes)
        s = {
            "round": 0, "stream_batches_done": 0, "stream_evaluations": 0,
            "gated_evaluations": 0,
            "stream_hits": np.zeros(G, np.int64),
            "guided": np.zeros(G, bool),
            # Per group: gated proposals judged and identities kept from them; prior
            # candidates tested by its gate (proposals / tried: the gate's prior mass).
            "gated_proposed": np.zeros(G, np.int64), "gated_kept": np.zeros(G, np.int64),
            "gate_tried": np.zeros(G, np.int64),
            # Per group, from the latest fit: stream samples inside the gate and the
            # group's stream faces among them; the leave-one-out leak (gates.leak).
            "gate_stream": np.zeros((G, 2), np.int64), "gate_leak": np.zeros(G),
            "fit_z": np.zeros((0, D), np.float32), "fit_probs": np.zeros((0, P), np.float32),
            "best": np.zeros((G, A), np.float32),
        }
        for g in range(G):
            s[f"pool_z_{g}"] = np.zeros((0, D), np.float32)
            s[f"pool_w_{g}"] = np.zeros((0, self.G.config.w_dim), np.float32)
            s[f"pool_src_{g}"] = np.zeros(0, np.int64)  # 0: stream, 1: gated
        return s

    def evaluations(self, s: dict) -> int:
        return int(s["stream_evaluations"]) + int(s["gated_evaluations"])

    def counts(self, s: dict) -> np.ndarray:
        return np.array([len(s[f"pool_z_{g}"]) for g in range(len(self.groups))])

    # Adding faces -----------------------------------------------------------------------

    def _add(self, s: dict, g: int, z: np.ndarray, src: int) -> int:
        """Adds faces z [n, D] to group g in order, skipping those within the identity
        radius of one already there (``jaxfair.identity``, W in prior units), up to quota;
        returns how many joined."""
        room = self.s.quota - len(s[f"pool_z_{g}"])
        if len(z) == 0 or room <= 0:
            return 0
        w = np.asarray(self._map(self.G.state, jnp.asarray(z)))
        pool = s[f"pool_w_{g}"]
        keep = identity.first_distinct(
            identity.to_prior_units(w, 0.0, self.w_std), self.s.identity_radius,
            identity.to_prior_units(pool, 0.0, self.w_std) if len(pool) else None, limit=room)
        s[f"pool_z_{g}"] = np.concatenate([s[f"pool_z_{g}"], z[keep]])
        s[f"pool_w_{g}"] = np.concatenate([s[f"pool_w_{g}"], w[keep]])
        s[f"pool_src_{g}"] = np.concatenate([s[f"pool_src_{g}"], np.full(keep.sum(), src)])
        return int(keep.sum())

    # Gates ------------------------------------------------------------------------------

    def _map_rows(self, z: np.ndarray) -> np.ndarray:
        """w [N, W] of z [N, D], MAP_CHUNK rows per call (one compiled shape)."""
        n = len(z)
        pad = -n % MAP_CHUNK
        zp = np.concatenate([z, np.zeros((pad, z.shape[1]), z.dtype)]) if pad else z
        w = [np.asarray(self._map(self.G.state, jnp.asarray(zp[i:i + MAP_CHUNK])))
             for i in range(0, len(zp), MAP_CHUNK)]
        return np.concatenate(w)[:n]

    def _fit_gates(self, s: dict) -> None:
        """Fits the gate of every unfilled group to the stream samples kept so far, and
        counts, per group, the samples inside it and the group's faces among them."""
        self._gates = {}
        need = self.s.quota - self.counts(s)
        if not self.s.guided_batch or len(s["fit_z"]) < 2 or not (need > 0).any():
            return
        w = self._map_rows(s["fit_z"])
        mean, std = gate_lib.standardizer(w)
        self._standard = (mean, std)
        x = (w - mean) / std
        probs = self._split_probs(s["fit_probs"])
        ridge = gate_lib.Ridge(x)
        for g in np.nonzero(need > 0)[0]:
            target = self.targets_list[g]
            gate = gate_lib.fit(ridge, probs, target, self.C.schema, self.judge.objective,
                                self.s.gate_margin, self.s.gate_min_samples)
            if gate is None:
                continue
            inside = gate_lib.contains(gate, x)
            faces = self._in_group(probs, target)
            s["gate_stream"][g] = (int(inside.sum()), int((inside & faces).sum()))
            s["gate_leak"][g] = gate_lib.leak(gate, x[faces])
            self._gates[int(g)] = gate

    def _split_probs(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Concatenated class probabilities [N, P] -> attribute -> [N, K]."""
        out, i = {}, 0
        for a in self.C.schema.attributes:
            out[a.name] = np.asarray(flat[:, i:i + len(a.classes)], np.float64)
            i += len(a.classes)
        return out

    def _in_group(self, probs: dict[str, np.ndarray], target: attributes.Target) -> np.ndarray:
        """[N] bool: the judge's rule, from stored probabilities (every attribute)."""
        ok = np.ones(len(next(iter(probs.values()))), bool)
        for a in self.C.schema.attributes:
            mask = np.asarray(target.masks[a.name], bool)
            if not mask.all():
                ok &= gate_lib.attribute_pass(probs[a.name], mask, self.judge.objective)
        return ok

    def _guided_costs(self, s: dict) -> np.ndarray:
        """[G] evaluations per identity by gated sampling: the stream's samples inside the
        gate per group face among them, pooled with the gated rounds' own counts."""
        tried = s["gate_stream"][:, 0] + s["gated_proposed"]
        found = s["gate_stream"][:, 1] + s["gated_kept"]
        return (tried + 1.0) / (found + 0.5)

    # Rounds -----------------------------------------------------------------------------

    def estimate(self, s: dict) -> int:
        """Evaluations the run will have made when every group is full (or the budget is
        spent), from the latest measured yields and gated costs."""
        need = self.s.quota - self.counts(s)
        n = max(1, s["stream_evaluations"])
        yields = (s["stream_hits"] + 0.5) / (n + 1.0)
        if self.s.guided_batch:
            _, left = plan_cost(need, yields, self._guided_costs(s), self._startable())
        else:
            left = float(np.max(np.where(need > 0, need / yields, 0.0)))
        done = self.evaluations(s)
        return int(min(self.s.max_evaluations, done + math.ceil(left)))

    def _startable(self) -> np.ndarray:
        """[G] bool: the group has a gate this round (enough stream samples pass each of
        its attributes); its cost before any face was seen inside it is the pseudo-count's
        (``_guided_costs``), and measured proposals correct it."""
        return np.isin(np.arange(len(self.groups)), list(self._gates))

    def _decide(self, s: dict) -> np.ndarray:
        need = self.s.quota - self.counts(s)
        if not self.s.guided_batch:
            return need > 0
        self._fit_gates(s)
        n = max(1, s["stream_evaluations"])
        yields = (s["stream_hits"] + 0.5) / (n + 1.0)
        startable = self._startable()
        stream = stream_groups(need, yields, self._guided_costs(s), startable)
        # Revised every round from the latest measurements: a group whose gated sampling
        # turns out dearer than the stream goes back to it.
        s["guided"] = (need > 0) & ~stream & startable
        return stream

    def _stream_round(self, s: dict, progress: Callable[[int, int], None]) -> None:
        filled = self.counts(s) >= self.s.quota
        for _ in range(self.s.stream_batches):
            b = int(s["stream_batches_done"])
            z, ok, masses, probs = jax.device_get(self.stream_step(
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
                s["fit_probs"] = np.concatenate([s["fit_probs"], probs[:room]])
            for g in range(len(self.groups)):
                if not filled[g]:
                    self._add(s, g, z[grp == g], 0)
            progress(self.evaluations(s), self.estimate(s))

    def _gated_round(self, s: dict) -> None:
        """One call judging every guided group's proposals: for group g, the first n_g
        prior candidates of this round's sequence that fall inside its gate, n_g fixed
        before any is drawn (``proposals``, then ``fill`` to the call's width), so they are
        exact draws of the prior inside the gate. A candidate inside several gates is
        judged once; it joins a group only as one of that group's own proposals."""
        need = self.s.quota - self.counts(s)
        guided = s["guided"] & (need > 0) & self._startable()
        want = proposals(need, self._guided_costs(s), guided, self.s.guided_batch)
        if want.sum() == 0:
            return
        # The call is as wide as the proposals need (powers of two, >= 8: a few traces at
        # most); the rest of its width is more proposals, in proportion.
        width = min(self.s.guided_batch, max(8, 1 << int(want.sum() - 1).bit_length()))
        want = fill(want, width)
        order = [int(g) for g in np.nonzero(want)[0]]
        key = jax.random.fold_in(self.gated_root, s["round"])
        mean, std = self._standard
        inside: dict[int, list[int]] = {g: [] for g in order}  # candidates in each gate
        zs = []
        while len(zs) < MAX_CHUNKS and any(len(inside[g]) < want[g] for g in order):
            z = np.asarray(jax.random.normal(jax.random.fold_in(key, len(zs)),
                                             (CANDIDATE_CHUNK, self.G.config.z_dim)))
            x = (np.asarray(self._map(self.G.state, jnp.asarray(z)), np.float64) - mean) / std
            for g in order:
                idx = np.nonzero(gate_lib.contains(self._gates[g], x))[0]
                inside[g].extend((len(zs) * CANDIDATE_CHUNK + idx).tolist())
            zs.append(z)
        mine = {g: inside[g][:want[g]] for g in order}
        rows = sorted(set().union(*mine.values()))
        if not rows:
            return
        z = np.concatenate(zs)[rows]
        pad = width - len(rows)  # candidates shared by gates: judged once, width kept
        zp = np.concatenate([z, np.repeat(z[-1:], pad, axis=0)]) if pad else z
        ok, _, _ = jax.device_get(self.gated_step(self.G.state, self.C.state,
                                                  jnp.asarray(zp), self.targets))
        s["gated_evaluations"] += width
        at = {r: i for i, r in enumerate(rows)}
        for g in order:
            cols = [at[r] for r in mine[g]]
            # Candidates tested by the gate until its last proposal (all, if it ran short).
            s["gate_tried"][g] += (mine[g][-1] + 1 if len(mine[g]) == want[g] and cols
                                   else len(zs) * CANDIDATE_CHUNK)
            s["gated_proposed"][g] += len(cols)
            kept = [i for i in cols if ok[g, i]]
            s["gated_kept"][g] += self._add(s, g, z[kept], 1)

    def run(self, state: dict | None = None, checkpoint: Callable[[dict], None] | None = None,
            log: Callable[[str], None] = print,
            progress: Callable[[int, int], None] | None = None) -> dict:
        """Rounds until every group has its quota or the budget is spent; returns the state
        (``counts(state)`` below the quota: a shortfall). ``progress(evaluations done,
        estimated at the end)`` is called before the first round and after every stream
        batch and gated call."""
        s = self.initial_state() if state is None else state
        progress = progress or (lambda done, total: None)
        progress(self.evaluations(s), self.estimate(s))
        while (self.counts(s) < self.s.quota).any():
            if self.evaluations(s) >= self.s.max_evaluations:
                break
            stream = self._decide(s)
            if stream.any():
                self._stream_round(s, progress)
            if self.s.guided_batch and s["guided"].any():
                self._gated_round(s)
                progress(self.evaluations(s), self.estimate(s))
            s["round"] += 1
            log(self.progress(s))
            if checkpoint is not None:
                checkpoint(s)
        return s

    def progress(self, s: dict) -> str:
        counts = self.counts(s)
        n = max(1, len(s["fit_z"]))
        return (f"round {s['round']}: {self.evaluations(s)} evaluations "
                f"(stream {s['stream_evaluations']}, gated {s['gated_evaluations']}); "
                f"identities {int(counts.sum())}/{self.s.quota * len(counts)}; gated: "
                + (", ".join(f"{self.groups[g]} (gate {s['gate_stream'][g, 0] / n:.1%} of "
                             f"the prior, {1 / self._guided_costs(s)[g]:.0%} accepted, "
                             f"leak {s['gate_leak'][g]:.1%})"
                             for g in np.nonzero(s['guided'])[0]) or "none"))


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
    for k in ("round", "stream_batches_done", "stream_evaluations", "gated_evaluations"):
        s[k] = int(s[k])
    return s
