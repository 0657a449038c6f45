"""Are two equal-size samples drawn from one distribution? Collapse and near-copy statistics.

The dataset report compares each group's identities X (n vectors) with an unguided
reference sample Y of the same group and size (prior samples the dataset's own acceptance
rule put in the group: what binned rejection sampling gives), in latent space and in the
classifier's feature space. Two statistics, both from the pairwise distances of the pooled
2n vectors (``jaxfair.report.diversity.pairwise``: 'rms' is the identity distance,
'cosine' for features):

  nn_ratio   mean nearest-neighbour distance within Y over the same within X. About 1 when
             X is distributed like Y; above 1 when X is clustered (near-copies around a few
             points sit close to each other, so their nearest neighbours are near).
  energy     the energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (Szekely & Rizzo; means
             over distinct pairs): 0 in expectation for one distribution, larger for any
             difference of distribution, not only clustering.

The *noise floor* of both comes from permutations: the pooled sample split at random into
two halves of n gives the value chance alone gives at that n. ``nn_floor`` is the 95th
percentile of the split nn_ratio (a dataset above it is more clustered than 95 % of random
splits); ``energy_p`` the permutation p-value ((1 + #splits with energy >= observed) / (1 +
permutations)). Deterministic for a given seed.

Example:
  r = compare(x, y, "rms", permutations=200, seed=0)
  r["nn_ratio"], r["nn_floor"], r["energy_p"]
"""

from __future__ import annotations

import numpy as np

from jaxfair.report import diversity

FLOOR_QUANTILE = 0.95


def nn_mean(d: np.ndarray) -> float:
    """Mean nearest-neighbour distance of a sample from its pairwise distances [n, n]."""
    return float(diversity.nearest_neighbour(d).mean())


def pair_mean(d: np.ndarray) -> float:
    """Mean over the distinct pairs of a square [n, n] block (n >= 2)."""
    n = len(d)
    return float((d.sum() - np.trace(d)) / (n * (n - 1)))


def split_stats(d: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(nn_ratio of b over a, energy distance of a and b) for index sets a, b of the pooled
    distances d [2n, 2n]. a plays the dataset, b the reference."""
    daa, dbb = d[np.ix_(a, a)], d[np.ix_(b, b)]
    nn_a = nn_mean(daa)
    ratio = nn_mean(dbb) / nn_a if nn_a > 0 else float("inf")
    energy = 2.0 * float(d[np.ix_(a, b)].mean()) - pair_mean(daa) - pair_mean(dbb)
    return ratio, energy


def compare(x: np.ndarray, y: np.ndarray, metric: str, permutations: int, seed: int) -> dict:
    """Two-sample comparison of dataset vectors x [n, D] with reference vectors y [n, D].

    Args:
      x, y: equal-size samples (n >= 2), any trailing shape (flattened).
      metric: 'rms' (latents: the identity distance) or 'cosine' (features).
      permutations: random splits of the pooled sample for the noise floor (>= 1).
      seed: numpy seed of the splits.

    Returns:
      {'n', 'nn_dataset', 'nn_reference', 'nn_ratio', 'nn_floor', 'energy', 'energy_p'}.
    """
    n = len(x)
    if len(y) != n or n < 2:
        raise ValueError(f"need two samples of one size >= 2, got {len(x)} and {len(y)}")
    pooled = np.concatenate([np.reshape(x, (n, -1)), np.reshape(y, (n, -1))])
    d = diversity.pairwise(pooled, metric)
    a, b = np.arange(n), np.arange(n, 2 * n)
    ratio, energy = split_stats(d, a, b)
    rng = np.random.default_rng(seed)
    null = np.array([split_stats(d, p[:n], p[n:]) for p in
                     (rng.permutation(2 * n) for _ in range(permutations))])
    return {"n": n, "nn_dataset": nn_mean(d[np.ix_(a, a)]),
            "nn_reference": nn_mean(d[np.ix_(b, b)]), "nn_ratio": ratio,
            "nn_floor": float(np.quantile(null[:, 0], FLOOR_QUANTILE)), "energy": energy,
            "energy_p": float((1 + np.sum(null[:, 1] >= energy)) / (1 + permutations))}
