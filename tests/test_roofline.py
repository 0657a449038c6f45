"""The measured matmul peak: one rate per size, the best of them."""

import math

from jaxfair import roofline


def test_rates_per_size_and_the_peak_is_their_best():
    rates = roofline.matmul_rates(sizes=(32, 64), seconds=0.01)
    assert sorted(rates) == [32, 64]
    assert all(math.isfinite(r) and r > 0 for r in rates.values())
    assert roofline.matmul_peak(sizes=(32,), seconds=0.01) > 0
