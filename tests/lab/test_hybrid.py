"""Hybrid search (mixture -> initial batch) and the acceptance numbers, on the tiny fit."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxfair
from jaxfair.distribution import fit as distribution
from jaxfair.distribution import gmm as gmmlib
from jaxfair.judge import attributes
from jaxfair.lab import distribution_eval, hybrid, measure
from jaxfair.models import autoencoder as ae
from jaxfair.search import spaces, strategies

# The lab (demo-only experiments): the cases that use ``evaluated`` share one evaluate run
# with its search engine (~30-50 CPU s on the 2-core VM, besides the tiny fit that the
# distribution tests build anyway); the others are cheap (< 4 CPU s).

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RARE = "tone=dark,hair=long"  # 1.3-2 % of the prior


def test_initial_batch_is_the_group_mixture_in_search_coordinates(fitted, evaluated):
    config, workdir, _ = fitted
    model = distribution.load(workdir)
    G = jaxfair.load_generator(config.generator)
    prior = evaluated[3]["comparison"].prior
    mixture = gmmlib.select(model.mixtures, model.groups.index(RARE))
    key = jax.random.key(1)
    w_space = spaces.Space.create("w", G.config)
    u0, spread = hybrid.initial_batch(key, model.ae_graphdef, model.ae_state, mixture, prior,
                                      w_space, 2, 16)
    assert u0.shape == (2, 16, 64) and spread.shape == (2, 64)
    # Decoded codes, mapped back to w, lie where the decoder puts the mixture's codes.
    w = spaces.to_latent(w_space, prior, u0.reshape(32, 64))
    codes = ae.encode(model.ae_graphdef, model.ae_state, w)
    assert float(jnp.mean(gmmlib.log_prob(mixture, codes))) > float(jnp.mean(
        gmmlib.log_prob(mixture, jax.random.normal(key, codes.shape) * 3)))
    plus = spaces.Space.create("wplus", G.config)
    u0p, spreadp = hybrid.initial_batch(key, model.ae_graphdef, model.ae_state, mixture,
                                        prior, plus, 2, 16)
    np.testing.assert_allclose(u0p.reshape(2, 16, G.config.num_ws, 64),
                               np.broadcast_to(u0[:, :, None], (2, 16, G.config.num_ws, 64)))
    np.testing.assert_allclose(spreadp.reshape(2, G.config.num_ws, 64),
                               np.broadcast_to(spread[:, None], (2, G.config.num_ws, 64)))
    with pytest.raises(ValueError, match="z cannot be reached from W"):
        hybrid.initial_batch(key, model.ae_graphdef, model.ae_state, mixture, prior,
                             spaces.Space.create("z", G.config), 2, 16)


def test_each_search_starts_from_one_component_with_its_spread(fitted, evaluated):
    """Two components, one nearly a point and one wide: a search's batch and spread come
    from the same component (both tiny or both wide), and each component is drawn."""
    _, workdir, _ = fitted
    model = distribution.load(workdir)
    prior = evaluated[3]["comparison"].prior
    mixture = gmmlib.select(model.mixtures, model.groups.index(RARE))
    code = mixture.means.shape[-1]
    two = gmmlib.DiagGMM(weights=jnp.array([0.5, 0.5]), means=mixture.means[:2],
                         variances=jnp.stack([jnp.full(code, 1e-8), jnp.full(code, 1.0)]))
    w_space = spaces.Space("w", 64, 64, 1)
    u0, spread = hybrid.initial_batch(jax.random.key(3), model.ae_graphdef, model.ae_state,
                                      two, prior, w_space, 16, 16)
    batch_rms = np.sqrt(np.mean(np.var(np.asarray(u0), axis=1), axis=-1))  # [S]
    spread_rms = np.sqrt(np.mean(np.square(np.asarray(spread)), axis=-1))
    point = spread_rms < 1e-2
    assert 0 < point.sum() < 16, spread_rms  # both components drawn
    np.testing.assert_array_equal(batch_rms < 1e-2, point)
    # The wide component's spread is the std its own batch shows (16 vs 256 draws).
    np.testing.assert_allclose(batch_rms[~point], spread_rms[~point], rtol=0.3)
    # Weight 0 is never drawn.
    _, spread = hybrid.initial_batch(jax.random.key(3), model.ae_graphdef, model.ae_state,
                                     two.replace(weights=jnp.array([0.0, 1.0])), prior,
                                     w_space, 16, 16)
    assert bool(jnp.all(jnp.sqrt(jnp.mean(jnp.square(spread), -1)) > 1e-2))


def test_first_accept():
    accepted = np.array([[0, 0, 0], [0, 3, 0], [1, 0, 0]])
    assert measure.first_accept(accepted) == [2, 1, None]


@pytest.fixture(scope="module")
def evaluated(fitted, make_config, tmp_path_factory):
    """One ``evaluate`` in space w on the rarest group: distribution arms, plain search and
    hybrid search from one engine. The comparison it ran is kept (a spy on
    ``hybrid.compare``) so that ``hybrid.run`` can be tested on it without compiling the
    engine a second time (the CI budget)."""
    _, workdir, _ = fitted
    config = make_config(groups=RARE, eval_samples=24, batch_size=32, hybrid_generations=3)
    config.search.update(dict(space="w", num_searches=2, population_size=16,
                              generations_per_chunk=2, max_generations=3))
    config.threshold = 0.9  # the searches' acceptance rule these numbers were measured at
    seen = {}
    real = hybrid.compare

    def spy(*args, **kw):
        seen["args"], seen["comparison"] = args, real(*args, **kw)
        return seen["comparison"]

    out = tmp_path_factory.mktemp("eval") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hybrid, "compare", spy)
        summary = distribution_eval.run(config, workdir, str(out), log=lambda s: None)
    return config, out, summary, seen


def test_evaluate_reports_truth_beside_the_classifier(evaluated):
    """Issue section 4 on the demo: purity by classifier and by ground truth, before and
    after verify, samples/s, distinct share, and the search engine on the same group."""
    _, out, summary, _ = evaluated
    check = summary["projection_check"]
    assert check["tone"] >= 0.95 and check["hair"] >= 0.95, check  # 24 points: coarse
    g = summary["groups"][RARE]
    unverified, verified = g["unverified"], g["verified"]
    assert unverified["samples"] == verified["samples"] == 24
    assert unverified["classifier_purity"] > 0.3 and verified["classifier_purity_kept"] == 1.0
    # The truth agrees with the classifier most of the time on kept samples, and the
    # decoded w sit close to the generator's surface (faces nearly identical).
    assert verified["ground_truth_purity"] >= 0.75, verified
    assert unverified["ground_truth_purity"] <= verified["ground_truth_purity"] + 0.1
    truth = verified["ground_truth"]
    assert truth["residual"]["median"] < 0.3 and truth["image_gap"]["median"] < 0.05, truth
    for arm in (unverified, verified):
        assert 0 < arm["distinct_share"] <= 1 and arm["samples_per_s"] > 0
    kept = np.load(out / "verified.npz")
    assert kept["w"].shape == (24, 64) and set(kept["group"]) == {RARE}
    for name in ("search", "start_only", "hybrid"):
        arm = g[name]
        assert arm["candidates"] == 2 * 16 * 5  # initial batch + 2 chunks of 2 generations
        if arm["accepted"]:  # judged on distinct latents, truth by projection (space w)
            assert 0 < arm["distinct_share"] <= 1 and arm["judged"] <= 24
            assert arm["classifier_purity_full_resolution"] == 1.0  # scored at full size
            assert arm["classifier_judge"].startswith("acceptance itself")
            assert arm["ground_truth"]["how"] == "projection onto W's surface"
    # Started from the group's mixture, the hybrid accepts from its first batch on.
    for name in ("start_only", "hybrid"):
        assert g[name]["accepted"] > g["search"]["accepted"], name
        assert g[name]["ground_truth_purity"] >= 0.75, name


def test_hybrid_starts_inside_the_group_with_the_same_budget(evaluated, monkeypatch,
                                                             fitted, tmp_path):
    config, _, _, seen = evaluated
    _, workdir, _ = fitted
    comparison = seen["comparison"]
    expected = ([5], 3, hybrid.ARMS)  # group index, budget, arms
    assert seen["args"][4:7] == expected

    def same_comparison(*args, **kw):
        assert args[4:7] == expected
        return comparison

    monkeypatch.setattr(hybrid, "compare", same_comparison)
    out = str(tmp_path / "hybrid")
    summary = hybrid.run(config, workdir, out, log=lambda s: None)
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f) == summary
    plain, warm = summary["groups"][RARE]["plain"], summary["groups"][RARE]["hybrid"]
    assert summary["generations"] == 4  # rounded up to whole chunks (2 x 2)
    for arm in (plain, warm):
        assert arm["candidates"] == 2 * 16 * 5  # same budget: initial batch + 4 generations
        assert arm["distinct_accepted"] <= arm["accepted"] and arm["archive_overflow"] == 0
        assert arm["distinct_identities"] <= arm["accepted"]
        assert arm["steady_seconds"] > 0 and arm["accepted_per_s"] is not None
    # From the prior, 32 candidates of a 1.3-2 % group: about 0.5 accepted expected. From
    # the group's mixture (purity > 0.3 in test_distribution): far more, in every search.
    assert warm["accepted_initial_batch"] >= 8 > plain["accepted_initial_batch"], (plain, warm)
    assert warm["first_accept_generation"] == [0, 0]
    assert warm["median_first_accept_generation"] == 0
    assert warm["accepted_first_chunk"] > plain["accepted_first_chunk"], (plain, warm)
    # start_only evaluates the same initial batch with search.sigma_init; hybrid's
    # Sep_CMA_ES took the component's spread instead (its step size after the budget
    # differs from start_only's, which started at 0.5).
    start = summary["groups"][RARE]["start_only"]
    assert plain["initial_spread_rms"] == start["initial_spread_rms"] == 0.5  # sigma_init
    assert warm["initial_spread_rms"] != 0.5
    d = warm["spread_of_accepted"]
    assert d["n"] == min(warm["distinct_identities"], 1000)
    assert 0 < d["median_nearest"] <= d["mean_pairwise"], d
    assert start["accepted_initial_batch"] == warm["accepted_initial_batch"]
    assert start["candidates"] == warm["candidates"]
    assert summary["settings"]["hybrid_spread"] == "mixture component"
    arms = comparison.arms[RARE]
    np.testing.assert_array_equal(arms["start_only"].accepted[0], arms["hybrid"].accepted[0])
    assert not np.allclose(arms["start_only"].state.strategy.std,
                           arms["hybrid"].state.strategy.std)


def test_engine_init_takes_each_searchs_spread(fitted, evaluated):
    """Engine.init(u0, spread): every search's Sep_CMA_ES starts with step size rms(spread)
    and diagonal covariance (spread / rms)^2; a strategy without a spread refuses it.
    (Same shapes as the hybrid arm of ``evaluated``: its compiled init is reused.)"""
    config, workdir, _ = fitted
    comparison = evaluated[3]["comparison"]
    engine, prior = comparison.engine, comparison.prior
    model = distribution.load(workdir)
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    u0, spread = hybrid.initial_batch(jax.random.key(5), model.ae_graphdef, model.ae_state,
                                      gmmlib.select(model.mixtures, model.groups.index(RARE)),
                                      prior, engine.space, 2, 16)
    targets = attributes.stack_targets([attributes.parse_target(RARE, C.schema)] * 2)
    keys = jax.random.split(jax.random.key(6), 2)
    st = engine.init(G.state, C.state, prior, targets, keys, u0, spread).strategy
    rms = np.sqrt(np.mean(np.square(np.asarray(spread)), axis=-1))
    np.testing.assert_allclose(st.std, rms, rtol=1e-6)
    np.testing.assert_allclose(st.C, np.square(np.asarray(spread) / rms[:, None]), rtol=1e-5)
    assert rms.min() > 0.05 and rms.max() < 2  # a group's spread, in prior units
    ga = dataclasses.replace(engine, strategy=strategies.build("SimpleGA", engine.space, 16))
    with pytest.raises(ValueError, match="strategy SimpleGA has no adaptable spread"):
        ga.init(G.state, C.state, prior, targets, keys, u0, spread)


def test_bad_input_is_one_line_exit_2(fitted, make_config, tmp_path):
    _, workdir, _ = fitted
    out = str(tmp_path / "x")
    config = make_config(groups="tone=dark,glasses=yes")
    config.search.space = "w"
    with pytest.raises(ValueError, match="no model for group 'tone=dark,glasses=yes'"):
        hybrid.run(config, workdir, out)
    with pytest.raises(ValueError, match="no model for group 'hair=long'"):
        distribution_eval.run(make_config(groups="hair=long"), workdir, out)
    assert not os.path.exists(out)
    bad = make_config(covariance="spherical")
    with pytest.raises(ValueError, match="distribution.covariance must be one of diag, full, "
                                         "got 'spherical'"):
        distribution.validate(bad.distribution, attributes.DEMO)
    # The command line turns a ValueError into one line and exit status 2 (jaxfair.cli.fail).
    r = subprocess.run([sys.executable, "-m", "jaxfair.lab", "hybrid", f"--workdir={workdir}",
                        f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == (
        "jaxfair.lab: error: hybrid search needs search.space 'w' or 'wplus': the fitted "
        "mixtures live in W and z cannot be reached from W (pass --config.search.space=w)")
    assert "Traceback" not in r.stderr and not os.path.exists(out)
