"""Pairwise and nearest-neighbour distances against naive loops."""

import numpy as np
import pytest

from jaxfair.report import diversity


def naive(x, metric):
    n = len(x)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if metric == "rms":
                d[i, j] = np.sqrt(np.mean((x[i] - x[j]) ** 2))
            else:
                d[i, j] = 1 - x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
    return d


@pytest.mark.parametrize("metric", diversity.METRICS)
def test_pairwise_matches_naive(metric):
    x = np.random.default_rng(0).normal(size=(7, 5)) + 30.0  # a large shared offset
    np.testing.assert_allclose(diversity.pairwise(x, metric), naive(x, metric), atol=1e-9)


def test_rms_of_wplus_rows_equals_w_for_identical_rows():
    w = np.random.default_rng(1).normal(size=(4, 6))
    wplus = np.repeat(w[:, None], 5, axis=1).reshape(4, -1)
    np.testing.assert_allclose(diversity.pairwise(wplus, "rms"),
                               diversity.pairwise(w, "rms"), atol=1e-12)


def test_summary_nearest_neighbour_and_duplicates():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.01], [10.0, 0.0]])
    d = diversity.pairwise(x, "rms")
    nn = diversity.nearest_neighbour(d)
    np.testing.assert_allclose(nn, naive(x, "rms")[[0, 1, 2, 3], [1, 2, 1, 1]], atol=1e-12)
    s = diversity.summary(d, radius=0.1)
    assert s["n"] == 4 and s["near_duplicate_pairs"] == 1 and s["items_with_near_duplicate"] == 2
    pairs = [naive(x, "rms")[i, j] for i in range(4) for j in range(i + 1, 4)]
    np.testing.assert_allclose(s["mean_pairwise"], np.mean(pairs), rtol=1e-12)
    np.testing.assert_allclose(s["nn"]["min"], 0.01 / np.sqrt(2), rtol=1e-9)
    one = diversity.summary(diversity.pairwise(x[:1], "rms"), 0.1)
    assert one["n"] == 1 and np.isnan(one["mean_pairwise"])
    with pytest.raises(ValueError, match="unknown metric"):
        diversity.pairwise(x, "l1")
