"""Proportions with 95% Wilson score intervals.

The Wilson interval keeps its coverage near 95% for small counts and for shares near 0 or
1 (a rare group of 2% in a few hundred samples), where the normal approximation
``p +- 1.96 sqrt(p(1-p)/n)`` collapses to zero width or leaves [0, 1].

Example:
  wilson(7, 100)                                  # (0.0343, 0.1375)
  proportions(np.array([0, 0, 2, 1]), ("light", "medium", "dark"))
  # {'light': {'count': 2, 'total': 4, 'share': 0.5, 'ci95': [0.150, 0.850]}, ...}
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% standard normal quantile


def wilson(k: int | np.ndarray, n: int | np.ndarray, z: float = Z95
           ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion k / n.

    Args:
      k: successes, any shape (broadcast with n).
      n: trials (n = 0 gives the uninformative interval [0, 1]).
      z: normal quantile; the default gives a 95% interval.

    Returns:
      (low, high), float64 arrays of the broadcast shape, inside [0, 1].
    """
    k = np.asarray(k, np.float64)
    n = np.asarray(n, np.float64)
    safe = np.maximum(n, 1.0)
    p = k / safe
    z2 = z * z
    centre = (p + z2 / (2 * safe)) / (1 + z2 / safe)
    half = z / (1 + z2 / safe) * np.sqrt(p * (1 - p) / safe + z2 / (4 * safe * safe))
    # k = 0 and k = n put the bound exactly on 0 and 1; rounding would miss by an ulp.
    low = np.where((n > 0) & (k > 0), np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where((n > 0) & (k < n), np.clip(centre + half, 0.0, 1.0), 1.0)
    return low, high


def proportion(k: int, n: int) -> dict:
    """{'count': k, 'total': n, 'share': k / n, 'ci95': [low, high]} (share 0 when n = 0)."""
    low, high = wilson(k, n)
    return {"count": int(k), "total": int(n), "share": float(k / n) if n else 0.0,
            "ci95": [float(low), float(high)]}


def proportions(labels: np.ndarray, classes: tuple[str, ...] | list[str]) -> dict[str, dict]:
    """Share of every class among integer labels, each with its Wilson interval.

    Args:
      labels: [N] int class indices into ``classes``.
      classes: class names, in index order.

    Returns:
      {class: proportion(count, N)} in class order (classes never seen have count 0).
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(classes)) if labels.size else \
        np.zeros(len(classes), np.int64)
    if len(counts) > len(classes):
        raise ValueError(f"label {labels.max()} out of range for {len(classes)} classes")
    return {c: proportion(int(k), labels.size) for c, k in zip(classes, counts)}


def share_of(mask: np.ndarray) -> dict:
    """proportion(sum(mask), len(mask)) of a boolean [N] array."""
    mask = np.asarray(mask, bool)
    return proportion(int(mask.sum()), mask.size)


def percent(p: dict) -> str:
    """'74.3% [73.1, 75.5]': a proportion dict as text for tables."""
    lo, hi = p["ci95"]
    return f"{100 * p['share']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
