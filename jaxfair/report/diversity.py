"""How spread out the faces of a group are: pairwise and nearest-neighbour distances.

Distances are measured in any vector space the caller provides: the generator's latent
space (W, or W+ rows) and the attribute classifier's penultimate features, and a
face-embedding model's space when one is converted. None of these is an identity-recognition
measure: two latents far apart may still render faces a recognition model calls the same
person, and classifier features are trained to separate attributes, not people. The
numbers show collapse (a group drawn from a few modes) and near-copies, not identity
uniqueness.

Metrics (float64 on the host: a few thousand vectors at most, and exact near zero where
near-duplicates live, unlike a float32 Gram matrix):
  'rms'     the identity distance (``jaxfair.identity``; here in the latents' own units):
            Euclidean distance divided by sqrt(number of coordinates): for a W+ latent
            [num_ws, w_dim] the root mean square over rows of the per-row distance, so W
            and W+ datasets read on one scale.
  'cosine'  1 - cosine similarity (features; scale-free).

Example:
  d = pairwise(latents.reshape(n, -1), "rms")      # [n, n]
  s = summary(d, radius=0.05)                      # mean pairwise, NN quantiles, duplicates
"""

from __future__ import annotations

import numpy as np

from jaxfair import identity

METRICS = ("rms", "cosine")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def pairwise(x: np.ndarray, metric: str) -> np.ndarray:
    """All pairwise distances.

    Args:
      x: [N, D] vectors (flatten W+ latents to [N, num_ws * w_dim] first).
      metric: 'rms' or 'cosine'.

    Returns:
      float64 [N, N], symmetric, zero diagonal.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected vectors [N, D], got shape {x.shape}")
    if metric == "rms":
        return identity.pairwise(x)  # the identity distance (centred Gram form, float64)
    if metric == "cosine":
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        u = x / np.maximum(norm, 1e-12)
        d = np.clip(1.0 - u @ u.T, 0.0, 2.0)
    else:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    np.fill_diagonal(d, 0.0)
    return (d + d.T) / 2  # exactly symmetric despite rounding


def nearest_neighbour(d: np.ndarray) -> np.ndarray:
    """Distance from each item to its nearest other item: [N] from pairwise [N, N] (N >= 2)."""
    d = np.array(d, np.float64)
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def mean_pairwise(d: np.ndarray) -> float:
    """Mean distance over the N(N-1)/2 distinct pairs (nan when N < 2)."""
    n = d.shape[0]
    if n < 2:
        return float("nan")
    return float(d[np.triu_indices(n, 1)].mean())


def duplicate_pairs(d: np.ndarray, radius: float) -> int:
    """Number of distinct pairs closer than ``radius``."""
    n = d.shape[0]
    return int(np.sum(d[np.triu_indices(n, 1)] < radius))


def summary(d: np.ndarray, radius: float) -> dict:
    """Diversity figures of one group from its pairwise distances [N, N].

    Returns:
      {'n', 'mean_pairwise', 'nn': {'mean', 'min', 'q05'...'q95'}, 'near_duplicate_pairs',
      'items_with_near_duplicate', 'radius'}; distances nan when N < 2.
    """
    n = d.shape[0]
    out = {"n": int(n), "mean_pairwise": mean_pairwise(d), "radius": float(radius)}
    if n < 2:
        out.update(nn={"mean": float("nan"), "min": float("nan")}, near_duplicate_pairs=0,
                   items_with_near_duplicate=0)
        return out
    nn = nearest_neighbour(d)
    out["nn"] = {"mean": float(nn.mean()), "min": float(nn.min()),
                 **{f"q{round(q * 100):02d}": float(np.quantile(nn, q)) for q in QUANTILES}}
    out["near_duplicate_pairs"] = duplicate_pairs(d, radius)
    out["items_with_near_duplicate"] = int(np.sum(nn < radius))
    return out
