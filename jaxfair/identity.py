"""The one identity / near-duplicate test of jaxfair: one distance, one unit, one radius.

Unit (*prior units*): a latent is measured as the generator's prior sees it. A w (or every
row of a W+ latent) is ``(w - w_avg) / w_std``, with ``w_std`` the prior's scalar rms spread
(``search.spaces.Prior``); a z is projected onto its sphere of radius sqrt(z_dim) (the mapping
network's first operation: z and 2z are the same face). Two independent prior samples are
about sqrt(2) apart in either space; the original method's z mutation (sigma 0.5) moves a
latent about 0.5.

Distance: the root-mean-square coordinate difference, ``sqrt(mean((a - b)^2))``.

Rule: two latents are one identity when their distance is ``<= radius``
(``config.identity_radius``; 0 = only exact copies). Used by the search archive (inside a
search), the search readout (across searches), the bulk job's cross-unit check (manifest),
the distribution method's draws, and the lab's distinct shares.

Example:
  u = to_prior_units(w, prior)                   # [N, w_dim] or [N, num_ws * w_dim]
  keep = first_distinct(u, radius=0.05)          # bool [N], greedy in row order
  d = pairwise(u)                                # float64 [N, N]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def distance(a, b):
    """Identity distance of a [..., D] and b [..., D] (broadcast): rms of the difference.

    jnp under jit (a tracer or jax.Array argument), numpy float64 otherwise.
    """
    if isinstance(a, jax.Array) or isinstance(b, jax.Array):
        return jnp.sqrt(jnp.mean(jnp.square(a - b), axis=-1))
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return np.sqrt(np.mean(diff * diff, axis=-1))


def pairwise(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """All identity distances, host side: x [N, D], y [M, D] (default x) -> float64 [N, M].

    Gram form after centring on x's mean (a shared offset would cost digits); exact near
    zero in float64, where near-duplicates live. With y None the result is exactly
    symmetric with a zero diagonal.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected vectors [N, D], got shape {x.shape}")
    centre = x.mean(axis=0) if len(x) else 0.0
    xc = x - centre
    yc = xc if y is None else np.asarray(y, np.float64) - centre
    d2 = np.sum(xc * xc, 1)[:, None] + np.sum(yc * yc, 1)[None, :] - 2.0 * xc @ yc.T
    d = np.sqrt(np.maximum(d2, 0.0) / x.shape[1])
    if y is None:
        np.fill_diagonal(d, 0.0)
        d = (d + d.T) / 2
    return d


def first_distinct(x: np.ndarray, radius: float, earlier: np.ndarray | None = None,
                   limit: int | None = None) -> np.ndarray:
    """Greedy identity filter in row order: bool [N], row i kept when no kept row before it
    (nor any row of ``earlier`` [M, D]) is within ``radius``; at most ``limit`` kept.

    Args:
      x: [N, D] latents in prior units.
      radius: identity radius (prior units).
      earlier: rows kept before (e.g. identities of earlier units), never dropped.
      limit: stop after this many kept rows (the rest are False).
    """
    x = _rows(np.asarray(x, np.float64))
    prev = np.zeros((0, x.shape[1])) if earlier is None else \
        _rows(np.asarray(earlier, np.float64))
    kept = np.concatenate([prev, np.empty_like(x)])
    n = len(prev)
    out = np.zeros(len(x), bool)
    for i, row in enumerate(x):
        if limit is not None and n - len(prev) >= limit:
            break
        if n and np.min(distance(kept[:n], row)) <= radius:
            continue
        out[i] = True
        kept[n] = row
        n += 1
    return out


def to_prior_units(w, w_avg, w_std) -> np.ndarray:
    """w [N, w_dim] or W+ [N, num_ws, w_dim] -> [N, D] float64 in prior units."""
    w = np.asarray(w, np.float64)
    return _rows((w - np.asarray(w_avg, np.float64)) / float(np.asarray(w_std)))


def _rows(x: np.ndarray) -> np.ndarray:
    """[N, ...] -> [N, prod(...)]; also for N = 0 (reshape(0, -1) is an error in numpy: a
    distribution unit's draw batch with nothing above the threshold stopped generate)."""
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))


def distinct_share(x: np.ndarray, radius: float) -> float:
    """Share of rows of x [N, D] (prior units) that ``first_distinct`` keeps; nan if empty."""
    return float(np.mean(first_distinct(x, radius))) if len(x) else float("nan")
