"""Host-side readout of searches: the accepted latents of every archive, de-duplicated across
searches with the identity rule (``jaxfair.identity``), and the report of a search that
found nothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair import identity
from jaxfair.errors import JaxfairError
from jaxfair.judge import attributes
from jaxfair.search import engine as eng_lib
from jaxfair.search import spaces


class TargetNotReached(JaxfairError, RuntimeError):
    """The budget ran out before the searches found what was asked."""


def collect(state: eng_lib.SearchState, space: spaces.Space, radius: float, limit: int,
            feature_radius: float = 0.0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Archived rows of all searches, de-duplicated across searches with the archive's rule:
    a row is dropped when an earlier kept row is within ``radius`` (``identity.distance`` of
    canonical latents) or, when ``feature_radius > 0``, its features are within
    ``feature_radius`` (archive.feature_distance) of an earlier kept row's.

    Returns:
      (u [N, D], search [N], generation [N], masses [N, A]) in (generation, search) order,
      at most ``limit`` rows.
    """
    a = jax.device_get(state.archive)
    rows = sorted((int(a.generation[s, i]), s, i) for s in range(a.count.shape[0])
                  for i in range(min(int(a.count[s]), a.latents.shape[1])))
    if not rows:
        return np.zeros((0, a.latents.shape[-1]), np.float32), np.zeros(0, int), \
            np.zeros(0, int), np.zeros((0, a.masses.shape[-1]), np.float32)
    g, s, i = map(np.asarray, zip(*rows))
    canon = np.asarray(spaces.canonical(space, jnp.asarray(a.latents[s, i])))
    if feature_radius > 0:
        f = np.asarray(a.features[s, i], np.float64)
        f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        keep = np.zeros(len(rows), bool)
        for r in range(len(rows)):
            prev = np.flatnonzero(keep)
            if len(prev) and (np.min(identity.distance(canon[prev], canon[r])) <= radius or
                              np.min(np.linalg.norm(f[prev] - f[r], axis=1)) <= feature_radius):
                continue
            keep[r] = True
            if keep.sum() == limit:
                break
    else:
        keep = identity.first_distinct(canon, radius, limit=limit)
    g, s, i = g[keep], s[keep], i[keep]
    return a.latents[s, i], s, g, a.masses[s, i]


def best_report(state, schema: attributes.Schema, target_text: str) -> str:
    """One line: the best target probability per attribute that the searches reached."""
    best = np.max(np.asarray(jax.device_get(state.best_masses)), axis=0)
    parts = ", ".join(f"{a.name} {p:.3f}" for a, p in zip(schema.attributes, best))
    return (f"target {target_text!r} not reached after {int(np.max(state.generation))} "
            f"generations ({int(np.sum(state.evaluated))} candidates); best target probability "
            f"per attribute: {parts}")
