"""Gates: they hold every stream sample that passes the group's attributes, cut most of the
prior, and prior samples drawn inside them and judged are exact draws of the group."""

import numpy as np
import pytest
from scipy import stats

from jaxfair.judge import attributes
from jaxfair.sampling import gates
from jaxfair.search import objective

SCHEMA = attributes.schema_from_classes("toy", {"tone": ("light", "medium", "dark"),
                                                "hair": ("short", "long")})
RULE = objective.Objective(threshold=0.99)
F = 6


def toy_probs(x):
    """A toy classifier of standardised features x [N, F]: tone moves along x0 (light below
    -0.5, dark above 1.2), hair along x1 (long above 0.6), sharply; the other columns are
    free."""
    def softmax(logits):
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    k = 12.0
    tone = softmax(np.stack([-k * (x[:, 0] + 0.5), np.zeros(len(x)), k * (x[:, 0] - 1.2)], 1))
    hair = softmax(np.stack([np.zeros(len(x)), k * (x[:, 1] - 0.6)], 1))
    return {"tone": tone, "hair": hair}


def in_group(x, target):
    p = toy_probs(x)
    return np.all([gates.attribute_pass(p[a], np.asarray(target.masks[a]), RULE)
                   for a in ("tone", "hair")], axis=0)


@pytest.fixture(scope="module")
def stream():
    x = np.random.default_rng(0).normal(size=(4000, F))
    return x, gates.Ridge(x)


def fitted(stream, text, margin=0.5):
    x, ridge = stream
    target = attributes.parse_target(text, SCHEMA)
    return gates.fit(ridge, toy_probs(x), target, SCHEMA, RULE, margin), target


@pytest.mark.parametrize("text, halfspaces", [("tone=dark,hair=long", 3),
                                              ("tone=medium", 2), ("hair=short", 1)])
def test_gate_holds_every_passing_sample_and_cuts_most_of_the_prior(stream, text,
                                                                     halfspaces):
    gate, target = fitted(stream, text)
    assert gate.dirs.shape == (halfspaces, F)
    fresh = np.random.default_rng(1).normal(size=(40_000, F))
    inside = gates.contains(gate, fresh)
    group = in_group(fresh, target)
    assert inside[group].mean() > 0.999  # holds the group (fresh samples, not the fit's)
    assert inside.mean() < 3 * group.mean() + 0.02  # and little else
    # the directions are the toy's axes
    assert np.all(np.abs(gate.dirs[:, :2]).max(axis=1) > 0.95)


def test_a_band_class_gets_a_halfspace_from_each_side(stream):
    gate, _ = fitted(stream, "tone=medium")
    assert sorted(np.sign(gate.dirs[:, 0])) == [-1.0, 1.0]


def test_draws_inside_the_gate_are_exact_draws_of_the_group(stream):
    gate, target = fitted(stream, "tone=dark,hair=long")
    r = np.random.default_rng(2)
    cand = r.normal(size=(200_000, F))
    gated = cand[gates.contains(gate, cand)]
    gated = gated[in_group(gated, target)][:1500]
    exact = r.normal(size=(400_000, F))
    exact = exact[in_group(exact, target)][:1500]
    assert len(gated) == len(exact) == 1500
    for j in range(F):  # constrained and free coordinates alike
        assert stats.ks_2samp(gated[:, j], exact[:, j]).pvalue > 0.001, j


def test_a_gate_that_cuts_into_the_group_fails_that_check(stream):
    # The same check can fail: a negative margin cuts the dark side of the gate short.
    gate, target = fitted(stream, "tone=dark,hair=long", margin=-0.4)
    r = np.random.default_rng(2)
    cand = r.normal(size=(200_000, F))
    gated = cand[gates.contains(gate, cand)]
    gated = gated[in_group(gated, target)][:1500]
    exact = r.normal(size=(400_000, F))
    exact = exact[in_group(exact, target)][:1500]
    assert min(stats.ks_2samp(gated[:, j], exact[:, j]).pvalue for j in range(2)) < 1e-4


def test_no_gate_before_enough_samples_pass_every_attribute(stream):
    x, ridge = stream
    target = attributes.parse_target("tone=dark,hair=long", SCHEMA)
    passes = gates.attribute_pass(toy_probs(x)["tone"], np.asarray(target.masks["tone"]), RULE)
    n = int(passes.sum())
    assert gates.fit(ridge, toy_probs(x), target, SCHEMA, RULE, 0.5, min_samples=n) is not None
    assert gates.fit(ridge, toy_probs(x), target, SCHEMA, RULE, 0.5, min_samples=n + 1) is None


def test_leak_counts_the_faces_that_alone_set_a_threshold():
    gate = gates.Gate(dirs=np.array([[1.0, 0.0]]), tau=np.array([2.5]),
                      top2=np.array([[2.0, 1.0]]))
    faces = np.array([[2.0, 0.0], [1.0, 0.0], [0.5, 3.0], [-1.0, 0.0]])
    # without the face at 2.0 the threshold is 1.0 + 0.5: that face would be outside
    assert gates.leak(gate, faces) == 0.25
    assert gates.leak(gate, faces[1:]) == 0.0
    assert gates.leak(gates.Gate(np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2))), faces) == 0


def test_attribute_pass_by_threshold_and_by_argmax():
    p = np.array([[0.6, 0.3, 0.1], [0.05, 0.5, 0.45], [0.001, 0.004, 0.995]])
    mask = np.array([False, True, True])
    assert gates.attribute_pass(p, mask, objective.Objective(threshold=0.9)).tolist() == [
        False, True, True]
    assert gates.attribute_pass(p, mask, objective.Objective(mode="argmax")).tolist() == [
        False, True, True]
    assert gates.attribute_pass(p, np.array([False, False, True]),
                                objective.Objective(threshold=0.99)).tolist() == [
        False, False, True]


def test_ridge_direction_recovers_a_linear_score():
    x = np.random.default_rng(3).normal(size=(3000, 5))
    true = np.array([0.6, -0.8, 0.0, 0.0, 0.0])
    d = gates.Ridge(x).direction(x @ true * 3.0 + 1.0)
    assert d @ true > 0.999
