"""The planner: its cost decision, the sharing of gated proposals, and a deterministic,
resumable run on the demo world."""

import os

import jax
import numpy as np
import pytest

from jaxfair.sampling import planner as pl
from jaxfair.sampling import policy


def test_common_groups_stay_in_the_stream_rare_ones_go_to_their_gates():
    need = np.array([10, 10, 10])
    yields = np.array([0.5, 0.2, 0.005])
    cost = np.full(3, 20.0)
    # stream for all: 2000 samples; the rare group by its gate: 50 + 200 = 250
    assert policy.stream_groups(need, yields, cost, np.ones(3, bool)).tolist() == [
        True, True, False]


def test_cheap_stream_keeps_every_group():
    assert policy.stream_groups(np.array([10, 10]), np.array([0.5, 0.4]), np.full(2, 20.0),
                            np.ones(2, bool)).all()


def test_a_group_without_a_gate_stays_with_the_stream():
    need, yields, cost = np.array([10, 10]), np.array([0.5, 0.001]), np.full(2, 5.0)
    assert policy.stream_groups(need, yields, cost, np.array([True, False])).tolist() == [
        True, True]
    assert policy.stream_groups(need, yields, cost, np.array([True, True])).tolist() == [
        True, False]


def test_filled_groups_are_neither():
    out = policy.stream_groups(np.array([0, 5]), np.array([0.5, 0.5]), np.full(2, 20.0),
                           np.ones(2, bool))
    assert out.tolist() == [False, True]


def test_proposals_follow_need_times_cost_within_the_cap():
    need, cost = np.array([10, 5, 0, 1]), np.array([4.0, 2.0, 3.0, 1.5])
    guided = np.array([True, True, True, False])
    assert policy.proposals(need, cost, guided, 256).tolist() == [40, 10, 0, 0]
    out = policy.proposals(need, cost, guided, 20)
    assert out.sum() == 20 and out[0] > out[1] > 0 and out[2] == out[3] == 0
    assert policy.proposals(np.array([5, 5, 5]), np.ones(3), np.ones(3, bool), 2).sum() == 2


def test_fill_grows_proposals_to_the_call_width_in_proportion():
    out = policy.fill(np.array([30, 10, 0]), 64)
    assert out.sum() == 64 and out[2] == 0 and out[0] > out[1] > 10
    assert policy.fill(np.array([3, 5]), 8).tolist() == [3, 5]


@pytest.mark.parametrize("field, value", [("quota", 0), ("guided_batch", -1),
                                          ("gate_margin", -0.1), ("gate_margin", float("nan")),
                                          ("fit_samples", 0), ("gate_min_samples", 1),
                                          ("identity_radius", float("nan"))])
def test_bad_settings_are_refused(field, value):
    kw = {"quota": 5, field: value}
    with pytest.raises(ValueError, match=field):
        policy.Settings(**kw)


@pytest.fixture(scope="module")
def demo_planner():
    import jaxfair
    from jaxfair.judge import attributes
    from jaxfair.sampling import stream
    from jaxfair.search import objective

    root = os.path.join(os.path.dirname(__file__), "..", "..", "checkpoints", "demo")
    G = jaxfair.load_generator(os.path.join(root, "generator"))
    C = jaxfair.load_classifier(os.path.join(root, "classifier"))
    groups = [attributes.format_target(t, C.schema)
              for _, t in attributes.enumerate_groups(C.schema, ("tone", "hair"))]
    judge = stream.Judge(G, C, objective.Objective(threshold=0.999))
    # The stream and gated batches of configs/demo.py:smoke (the pipeline's smoke dataset,
    # tests/pipeline): the same compiled steps, loaded from the session's cache.
    s = policy.Settings(quota=4, stream_batch=64, stream_batches=1, guided_batch=64,
                        gate_min_samples=8, max_evaluations=20_000)
    return pl.Planner(s, G, C, judge, groups, 1.0, jax.random.key(0))


# In the default run: ~8 CPU s (its steps are the smoke dataset's; ~40 before they were).
def test_demo_run_fills_every_group_and_resumes_identically(demo_planner, tmp_path):
    p = demo_planner
    saved = []

    def keep(s):
        path = tmp_path / f"r{s['round']}.npz"
        pl.save(str(path), s)
        saved.append(path)

    final = p.run(checkpoint=keep, log=lambda m: None)
    assert (p.counts(final) == 4).all()
    assert final["gated_evaluations"] > 0  # the rare groups went to their gates
    # every kept face passes its group's test, and no two are the same face (the test
    # compiled once: run op by op it compiled ~450 small programs, ~15 CPU s)
    accepts = jax.jit(p.judge.accepts)
    for g in range(len(p.groups)):
        z = final[f"pool_z_{g}"]
        ok = np.asarray(accepts(p.G.state, p.C.state, z, attributes_rows(p, g, len(z))))
        assert ok.all()
        w = final[f"pool_w_{g}"]
        d = np.sqrt(np.mean(np.square(w[:, None] - w[None]), axis=-1)) + np.eye(len(w)) * 9
        assert d.min() > p.s.identity_radius
    assert len(saved) >= 2
    resumed = p.run(pl.load(str(saved[0])), log=lambda m: None)
    for k in final:
        np.testing.assert_array_equal(np.asarray(final[k]), np.asarray(resumed[k]), err_msg=k)


def attributes_rows(p, g, n):
    from jaxfair.judge import attributes

    return attributes.stack_targets([p.targets_list[g]] * n)


def test_judge_at_a_score_resolution_classifies_that_blocks_skip_image(demo_planner):
    from jaxfair.judge import classifier
    from jaxfair.sampling import stream

    p = demo_planner
    judge = stream.Judge(p.G, p.C, p.judge.objective, resolution=32)
    z = jax.random.normal(jax.random.key(5), (4, p.G.config.z_dim))
    img = p.G.synthesis(p.G.mapping(z), resolution=32)
    assert img.shape[1] == 32
    want = jax.jit(lambda c, x: classifier.predict(p.C.graphdef, c, x, p.C.preprocess,
                                                   p.C.schema))(p.C.state, img)
    got = jax.jit(judge.probs)(p.G.state, p.C.state, z)
    for a in want:
        np.testing.assert_allclose(got[a], want[a], atol=1e-6)
    with pytest.raises(ValueError, match="planner.score_resolution must be one of"):
        stream.Judge(p.G, p.C, p.judge.objective, resolution=48)
