"""The planner's decisions, from measured numbers only: its settings, which groups the
shared stream keeps filling and which switch to gated sampling (``stream_groups``,
``plan_cost``), and how a round's gated proposals are shared among groups
(``proposals``). Pure numpy, no model: ``planner.py`` runs the rounds these decide.

Example:
  stream = stream_groups(need=np.array([0, 30, 50]), yields=np.array([0.4, 0.02, 0.01]),
                         guided_cost=np.full(3, 4.0), startable=np.ones(3, bool))
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Settings:
    """Planner settings (see configs: ``c.planner``).

    Attributes:
      quota: identities per group.
      stream_batch: prior samples per compiled stream step.
      stream_batches: stream steps per round.
      guided_batch: most gated proposals judged per round (all guided groups in one call);
        0 = binned rejection sampling only.
      gate_margin: room of each gate beyond the farthest stream sample passing its
        attribute, in standard deviations of the gate's score (gates.py).
      gate_min_samples: stream samples that must pass each attribute a group constrains
        before its gate is fitted (and the group may leave the stream).
      max_evaluations: budget of the whole search (stream + gated proposals).
      identity_radius: rms W distance (w_std units) at or below which two faces are one.
      fit_samples: stream samples kept to fit the gates.
    """

    quota: int
    stream_batch: int = 256
    stream_batches: int = 1
    guided_batch: int = 256
    gate_margin: float = 0.5
    gate_min_samples: int = 50
    max_evaluations: int = 1_000_000
    identity_radius: float = 0.05
    fit_samples: int = 8192

    def __post_init__(self):
        for name in ("quota", "stream_batch", "stream_batches", "max_evaluations",
                     "fit_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"planner.{name} must be >= 1, got {getattr(self, name)}")
        if self.guided_batch < 0:
            raise ValueError(f"planner.guided_batch must be >= 0, got {self.guided_batch}")
        if self.gate_min_samples < 2:
            raise ValueError(f"planner.gate_min_samples must be >= 2, got "
                             f"{self.gate_min_samples}")
        if not 0 <= self.gate_margin <= 10:
            raise ValueError(f"planner.gate_margin must be in [0, 10], got {self.gate_margin}")
        if not self.identity_radius >= 0:
            raise ValueError(f"identity_radius must be >= 0, got {self.identity_radius}")


def stream_groups(need: np.ndarray, yields: np.ndarray, guided_cost: np.ndarray,
                  startable: np.ndarray) -> np.ndarray:
    """Which unfilled groups the stream should keep filling ([G] bool; see module docstring).

    Args:
      need: [G] identities missing (0: filled).
      yields: [G] accepted stream samples per stream sample (> 0).
      guided_cost: [G] evaluations per identity by gated sampling.
      startable: [G] gated sampling can start (the group has a gate).
    """
    return plan_cost(need, yields, guided_cost, startable)[0]


def plan_cost(need: np.ndarray, yields: np.ndarray, guided_cost: np.ndarray,
              startable: np.ndarray) -> tuple[np.ndarray, float]:
    """(``stream_groups``' choice, its estimated evaluations to fill every group)."""
    need = np.asarray(need, np.float64)
    open_ = need > 0
    stream_cost = np.where(open_, need / np.asarray(yields, np.float64), 0.0)
    guided = need * np.asarray(guided_cost, np.float64)
    must = open_ & ~np.asarray(startable)
    order = [g for g in np.argsort(stream_cost, kind="stable") if open_[g]]
    best, best_k = math.inf, len(order)
    for k in range(len(order) + 1):
        inside, outside = order[:k], order[k:]
        if any(must[g] for g in outside):
            continue
        cost = max((stream_cost[g] for g in inside), default=0.0) + sum(guided[g]
                                                                         for g in outside)
        if cost < best - 1e-9:
            best, best_k = cost, k
    chosen = np.zeros(len(need), bool)
    chosen[order[:best_k]] = True
    return chosen, float(best)


def proposals(need: np.ndarray, cost: np.ndarray, guided: np.ndarray, cap: int
              ) -> np.ndarray:
    """Gated proposals per group for one round ([G] int, sum <= cap): what each guided
    group expects to need (``ceil(need * cost)``), scaled down in proportion when they
    exceed ``cap`` (largest remainder), at least one per guided group while ``cap`` lasts
    (neediest first)."""
    want = np.where(guided, np.ceil(np.asarray(need, np.float64) * np.asarray(cost)), 0.0)
    out = want.astype(int)
    if out.sum() <= cap:
        return out
    out = np.zeros(len(want), int)
    order = [g for g in np.argsort(-want, kind="stable") if want[g] > 0]
    for g in order[:cap]:
        out[g] = 1
    left = cap - out.sum()
    if left > 0:
        share = np.maximum(want - out, 0.0)
        share = share / share.sum() * left
        out += np.floor(share).astype(int)
        rest = cap - out.sum()
        out[np.argsort(-(share - np.floor(share)), kind="stable")[:rest]] += 1
    return out


def fill(want: np.ndarray, width: int) -> np.ndarray:
    """``want`` [G] grown to sum to ``width`` (>= its sum): the extra in proportion to
    ``want``, largest remainder."""
    want = np.asarray(want, int)
    extra = width - int(want.sum())
    if extra <= 0 or want.sum() == 0:
        return want.copy()
    share = want / want.sum() * extra
    out = want + np.floor(share).astype(int)
    out[np.argsort(-(share - np.floor(share)), kind="stable")[:width - out.sum()]] += 1
    return out
