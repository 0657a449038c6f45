"""The collapse statistics against naive formulas, and on a toy group: a genuine rejection
sample reads ~1, near-copies of a few points read clearly above the noise floor."""

import numpy as np
import pytest

from jaxfair.report import two_sample

D, N = 32, 40


def rejection(rng, n):
    """n draws of N(0, I_D) restricted to the toy group z0 > 1 (16 % of the prior)."""
    out = []
    while len(out) < n:
        z = rng.standard_normal((256, D))
        out.extend(z[z[:, 0] > 1])
    return np.array(out[:n])


def naive(x, y):
    def dist(a, b):
        return np.sqrt(np.mean((a - b) ** 2))

    def nn(s):
        return np.mean([min(dist(s[i], s[j]) for j in range(len(s)) if j != i)
                        for i in range(len(s))])

    def within(s):
        return np.mean([dist(s[i], s[j]) for i in range(len(s)) for j in range(len(s))
                        if i != j])

    cross = np.mean([dist(a, b) for a in x for b in y])
    return nn(y) / nn(x), 2 * cross - within(x) - within(y)


def test_statistics_equal_naive_formulas():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 5)), rng.standard_normal((6, 5)) + 0.3
    r = two_sample.compare(x, y, "rms", permutations=9, seed=0)
    ratio, energy = naive(x, y)
    assert r["nn_ratio"] == pytest.approx(ratio, rel=1e-9)
    assert r["energy"] == pytest.approx(energy, rel=1e-9)
    assert 0 < r["energy_p"] <= 1 and r["n"] == 6
    assert r == two_sample.compare(x, y, "rms", permutations=9, seed=0)  # deterministic


def test_detects_near_copies_not_a_faithful_sample():
    rng = np.random.default_rng(0)
    reference = rejection(rng, N)
    genuine = rejection(rng, N)
    centres = rejection(rng, 4)  # a group collapsed onto 4 faces: near-copies of each
    copies = np.repeat(centres, N // 4, axis=0) + 0.05 * rng.standard_normal((N, D))
    fair = two_sample.compare(genuine, reference, "rms", permutations=200, seed=0)
    bad = two_sample.compare(copies, reference, "rms", permutations=200, seed=0)
    assert 0.85 < fair["nn_ratio"] < 1.15 and fair["nn_ratio"] < fair["nn_floor"]
    assert fair["energy_p"] > 0.05
    assert bad["nn_ratio"] > 5 and bad["nn_ratio"] > 3 * bad["nn_floor"]
    assert bad["energy_p"] < 0.01
    # Features are compared by cosine distance: the same verdicts.
    assert two_sample.compare(copies, reference, "cosine", 100, 0)["nn_ratio"] > 5


def test_rejects_unequal_samples():
    with pytest.raises(ValueError, match="one size"):
        two_sample.compare(np.zeros((3, 2)), np.zeros((4, 2)), "rms", 5, 0)
