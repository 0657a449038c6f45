"""The planner's decisions, from measured numbers only: its settings, which groups the
shared stream keeps filling and which switch to chains (``stream_groups``, ``plan_cost``),
and how the chains are shared among groups (``allocate``, ``assign_slots``). Pure numpy,
no model: ``planner.py`` runs the rounds these decide.

Example:
  stream = stream_groups(need=np.array([0, 30, 50]), yields=np.array([0.4, 0.02, 0.01]),
                         chain_cost=np.full(3, 12.0), startable=np.ones(3, bool))
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
      num_chains: chains advanced together (all groups), 0 = binned rejection only.
      chain_steps: steps per chain per round (one compiled scan).
      rho_max: largest correlation allowed between consecutive kept states of a chain.
      max_thin: cap on the thinning interval (steps).
      target_acceptance: the chains' step size adapts towards this acceptance rate.
      beta_init: initial step of the free (complement) moves, in (0, 1].
      chain_cost_guess: evaluations per chain identity assumed before any chain ran.
      max_evaluations: budget of the whole search (stream + chains).
      identity_radius: rms W distance (w_std units) at or below which two faces are one.
      fit_samples: stream samples kept to estimate the groups' directions.
    """

    quota: int
    stream_batch: int = 256
    stream_batches: int = 1
    num_chains: int = 16
    chain_steps: int = 16
    rho_max: float = 0.2
    max_thin: int = 32
    target_acceptance: float = 0.3
    beta_init: float = 0.5
    chain_cost_guess: float = 10.0
    max_evaluations: int = 1_000_000
    identity_radius: float = 0.05
    fit_samples: int = 8192

    def __post_init__(self):
        for name in ("quota", "stream_batch", "stream_batches", "chain_steps", "max_thin",
                     "max_evaluations", "fit_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"planner.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_chains < 0:
            raise ValueError(f"planner.num_chains must be >= 0, got {self.num_chains}")
        if self.chain_steps < 3 and self.num_chains:
            raise ValueError(f"planner.chain_steps must be >= 3, got {self.chain_steps}")
        for name in ("rho_max", "target_acceptance", "beta_init"):
            v = getattr(self, name)
            if not 0 < v < 1 and not (name == "beta_init" and v == 1):
                raise ValueError(f"planner.{name} must be in (0, 1), got {v}")
        if not self.chain_cost_guess > 0 or not math.isfinite(self.chain_cost_guess):
            raise ValueError(f"planner.chain_cost_guess must be > 0, got "
                             f"{self.chain_cost_guess}")
        if not self.identity_radius >= 0:
            raise ValueError(f"identity_radius must be >= 0, got {self.identity_radius}")


def stream_groups(need: np.ndarray, yields: np.ndarray, chain_cost: np.ndarray,
                  startable: np.ndarray) -> np.ndarray:
    """Which unfilled groups the stream should keep filling ([G] bool; see module docstring).

    Args:
      need: [G] identities missing (0: filled).
      yields: [G] accepted stream samples per stream sample (> 0).
      chain_cost: [G] evaluations per identity by chains.
      startable: [G] a chain can start (the group has a face).
    """
    return plan_cost(need, yields, chain_cost, startable)[0]


def plan_cost(need: np.ndarray, yields: np.ndarray, chain_cost: np.ndarray,
              startable: np.ndarray) -> tuple[np.ndarray, float]:
    """(``stream_groups``' choice, its estimated evaluations to fill every group)."""
    need = np.asarray(need, np.float64)
    open_ = need > 0
    stream_cost = np.where(open_, need / np.asarray(yields, np.float64), 0.0)
    chain = need * np.asarray(chain_cost, np.float64)
    must = open_ & ~np.asarray(startable)
    order = [g for g in np.argsort(stream_cost, kind="stable") if open_[g]]
    best, best_k = math.inf, len(order)
    for k in range(len(order) + 1):
        inside, outside = order[:k], order[k:]
        if any(must[g] for g in outside):
            continue
        cost = max((stream_cost[g] for g in inside), default=0.0) + sum(chain[g]
                                                                        for g in outside)
        if cost < best - 1e-9:
            best, best_k = cost, k
    chosen = np.zeros(len(need), bool)
    chosen[order[:best_k]] = True
    return chosen, float(best)


def allocate(need: np.ndarray, eligible: np.ndarray, num_chains: int) -> np.ndarray:
    """Chains per group ([G] int, sum <= num_chains) in proportion to need (largest
    remainder), at least one per eligible group while chains last (neediest first)."""
    need = np.where(eligible, np.asarray(need, np.float64), 0.0)
    out = np.zeros(len(need), int)
    groups = [g for g in np.argsort(-need, kind="stable") if need[g] > 0]
    if not groups or num_chains == 0:
        return out
    for g in groups[:num_chains]:
        out[g] = 1
    left = num_chains - out.sum()
    if left > 0:
        share = need / need.sum() * left
        out += np.floor(share).astype(int)
        rest = num_chains - out.sum()
        order = np.argsort(-(share - np.floor(share)), kind="stable")
        out[order[:rest]] += 1
    return out


def assign_slots(current: np.ndarray, alloc: np.ndarray) -> np.ndarray:
    """Chain slots -> group ([C], -1 idle) for ``alloc`` chains per group, keeping every
    chain that may continue in its slot (its state and thinning clock go on) and filling
    the lowest free slots with new chains."""
    out = np.full(len(current), -1, np.int64)
    for g, n in enumerate(alloc):
        mine = np.nonzero(current == g)[0][:n]
        out[mine] = g
    for g, n in enumerate(alloc):
        more = n - int(np.sum(out == g))
        if more > 0:
            out[np.nonzero(out < 0)[0][:more]] = g
    return out
