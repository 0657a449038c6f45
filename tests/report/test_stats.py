"""Wilson intervals, proportions and the text table."""

import numpy as np
import pytest
from scipy.stats import binomtest

from jaxfair.report import stats, text


@pytest.mark.parametrize("k,n", [(0, 1), (0, 10), (3, 10), (10, 10), (7, 100), (1, 5000),
                                 (3715, 5000), (2500, 5000)])
def test_wilson_matches_scipy(k, n):
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = stats.wilson(k, n)
    np.testing.assert_allclose([low, high], [ref.low, ref.high], rtol=1e-12, atol=1e-15)


def test_wilson_naive_formula_and_edges():
    k, n, z = 18, 1000, stats.Z95
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    np.testing.assert_allclose(stats.wilson(k, n), (centre - half, centre + half), rtol=1e-12)
    low, high = stats.wilson(np.array([0, 5, 0]), np.array([10, 5, 0]))
    assert low[0] == 0 and 0 < high[0] < 0.3  # no successes: upper bound still positive
    assert high[1] == 1 and 0.4 < low[1] < 1   # all successes
    assert (low[2], high[2]) == (0, 1)          # no trials: uninformative
    for n in (1, 3, 7, 10, 49, 5000):  # exact bounds, never an ulp inside
        assert stats.wilson(n, n)[1] == 1.0 and stats.wilson(0, n)[0] == 0.0


def test_proportions_counts_every_class():
    p = stats.proportions(np.array([0, 0, 2, 0]), ("light", "medium", "dark"))
    assert list(p) == ["light", "medium", "dark"]
    assert [p[c]["count"] for c in p] == [3, 0, 1]
    assert p["light"]["share"] == 0.75 and p["medium"]["total"] == 4
    lo, hi = p["light"]["ci95"]
    assert lo < 0.75 < hi
    with pytest.raises(ValueError, match="out of range"):
        stats.proportions(np.array([3]), ("a", "b"))
    assert stats.share_of(np.array([True, False]))["count"] == 1
    assert stats.percent(stats.proportion(1, 4)) == "25.0% [4.6, 69.9]"


def test_text_table_aligns_columns():
    out = text.table(["class", "count"], [["light", 3715], ["dark", 7]]).splitlines()
    assert out[0] == "class  count"
    assert out[1] == "-----  -----"
    assert out[2] == "light   3715" and out[3] == "dark       7"
