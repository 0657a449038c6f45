"""The distribution method on the demo world: autoencoder, fit, draw, CLI errors."""

import dataclasses
import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from cli_runs import run_all

import jaxfair
from jaxfair.distribution import draw as distribution_draw
from jaxfair.distribution import fit as distribution
from jaxfair.distribution import gmm as gmmlib
from jaxfair.io import checkpoints
from jaxfair.judge import attributes
from jaxfair.models import autoencoder as ae

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUPS = [n for n, _ in attributes.enumerate_groups(attributes.DEMO, ("tone", "hair"))]


def test_autoencoder_shapes_and_code_is_relu():
    assert ae.AutoencoderConfig.scaled(64).hidden == (48, 32, 16)
    assert ae.AutoencoderConfig.scaled(64).code_dim == 8
    pub = ae.AutoencoderConfig.published()
    assert (pub.w_dim, pub.hidden, pub.code_dim) == (512, (256, 128, 64), 32)
    assert ae.AutoencoderConfig.scaled(512) == pub
    cfg = ae.AutoencoderConfig.scaled(64, num_groups=3)
    graphdef, state = ae.init(cfg, jax.random.key(0))
    w = jax.random.normal(jax.random.key(1), (5, 64))
    code = ae.encode(graphdef, state, w)
    assert code.shape == (5, 8) and float(jnp.min(code)) >= 0
    assert ae.decode(graphdef, state, code).shape == (5, 64)
    with pytest.raises(ValueError, match="output_activation"):
        ae.AutoencoderConfig(output_activation="tanh")


def test_autoencoder_training_reduces_reconstruction_error():
    """W of rank 6 plus noise: a code of 8 can hold it; 300 steps cut the error well down."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    basis = jax.random.normal(k1, (6, 32))
    w = np.asarray(jax.random.normal(k2, (2048, 6)) @ basis * 2.0 + 1.0
                   + 0.05 * jax.random.normal(k3, (2048, 32)))
    labels = (w[:, 0] > np.median(w[:, 0])).astype(np.int32)
    dc = ml_collections.ConfigDict(dict(learning_rate=3e-3, ae_steps=300, ae_batch_size=128,
                                        separation_weight=0.1))
    cfg = ae.AutoencoderConfig(w_dim=32, hidden=(32, 16), code_dim=8, num_groups=2,
                               output_activation="linear")
    graphdef0, state0 = ae.init(cfg, jax.random.key(1))
    graphdef, state, _ = distribution.train_autoencoder(cfg, w, labels, dc, jax.random.key(1),
                                                        log=lambda s: None)
    # Same standardisation for the untrained model, so only the weights differ.
    state0["w_mean"][...], state0["w_std"][...] = state["w_mean"][...], state["w_std"][...]
    before = ae.losses(graphdef0, state0, jnp.asarray(w), jnp.asarray(labels))[0]
    after, ce = ae.losses(graphdef, state, jnp.asarray(w), jnp.asarray(labels))
    assert float(after) < 0.2 * float(before), (float(before), float(after))
    assert float(after) < 0.15
    assert float(ce) < 0.69  # the head learned something about the labels


def test_reconstruction_renders_in_batches_within_the_budget():
    """The fit's reconstruction check renders its 2 x n images in sized batches (one call for
    all 512 images needed ~16-30 GiB at 256 px on CPU); the error is the one-call value.
    A tiny random generator (8 px): only the batching is under test."""
    from jaxfair.judge import sizing
    from jaxfair.models import stylegan2 as sg

    G = sg.Generator.random(sg.StyleGAN2Config.create(
        z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64, channel_max=8),
        jax.random.key(0))
    graphdef, state = ae.init(ae.AutoencoderConfig(w_dim=8, hidden=(8,), code_dim=4,
                                                   output_activation="linear"),
                              jax.random.key(1))
    w = np.asarray(G.mapping(jax.random.normal(jax.random.key(2), (6, 8)))[:, 0])
    factory = distribution.reconstruction_factory(G, "const")
    m2, m4 = (sizing.compiled_memory(*factory(b), b) for b in (2, 4))
    assert m2.total < m4.total
    logs = []
    got = distribution.reconstruction_errors(G, graphdef, state, w, "const", pairs=4,
                                             budget_bytes=(m2.total + m4.total) // 2,
                                             log=logs.append)
    assert logs == [f"reconstruct step: batch 2 pairs (configured 4), compiled memory "
                    f"{sizing.describe(m2)}"]
    w_hat = np.asarray(ae.decode(graphdef, state, ae.encode(graphdef, state, jnp.asarray(w))))
    ws = np.broadcast_to(np.concatenate([w, w_hat])[:, None], (12, G.config.num_ws, 8))
    img = np.asarray(G.synthesis(ws, "const"))
    assert got["image_mean_abs"] == pytest.approx(np.mean(np.abs(img[:6] - img[6:])), abs=2e-5)
    assert got["w_relative_mse"] == pytest.approx(
        np.mean((w_hat - w) ** 2) / np.mean(np.var(w, axis=0)), abs=1e-5)
    assert got["num_heldout"] == 6


@pytest.fixture(scope="module")
def drawn(fitted, once):
    _, workdir, _ = fitted
    out = os.path.join(os.path.dirname(workdir), "draw")
    counts = ";".join(f"{g}:6" for g in GROUPS)
    return once("drawn", lambda: (out, distribution_draw.draw(
        workdir, counts, out, verify=True, batch_size=64, seed=0, max_draw_factor=200,
        image_format="png", log=lambda s: None)))


def test_fit_records_groups_and_reconstruction(fitted, tiny):
    config, workdir, meta = fitted
    groups = meta["fit"]["groups"]
    assert list(groups) == GROUPS + ["tone=dark"]
    assert all(g["members"] >= tiny["min_group_samples"] for g in groups.values())
    # Dark is the union of dark-short and dark-long (disjoint at threshold > 0.5).
    assert groups["tone=dark"]["members"] >= (groups["tone=dark,hair=short"]["members"]
                                              + groups["tone=dark,hair=long"]["members"])
    rec = meta["fit"]["reconstruction"]
    assert rec["w_relative_mse"] < 0.6 and rec["image_mean_abs"] < 0.2
    assert meta["fit"]["head_accuracy"] > 0.8
    fitted_model = distribution.load(workdir)
    assert fitted_model.groups == tuple(groups)
    assert fitted_model.mixtures.means.shape == (7, tiny["num_components"], 8)


def test_verified_draw_is_pure_and_rerenders_into_its_group(fitted, drawn):
    config, _, meta = fitted
    out, summary = drawn
    threshold = meta["threshold"]
    for name in GROUPS:
        s = summary["groups"][name]
        assert s["count"] == 6 and s["purity_after"] == 1.0 and s["argmax_purity_after"] == 1.0
        # The group's mixture concentrates on it far above its share of the prior (tone=dark,
        # hair=long is about 1.3 % of labelled samples at threshold 0.9).
        assert s["purity_before"] > 0.3, (name, s)
        assert s["distinct_share"] == 1.0
    # Independent check: re-render the stored W and classify.
    with open(os.path.join(out, "records.jsonl")) as f:
        records = [json.loads(line) for line in f]
    ws = np.load(os.path.join(out, "ws.npy"))
    assert len(records) == len(ws) == 36
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    img = G.synthesis(np.broadcast_to(ws[:, None], (len(ws), G.config.num_ws, ws.shape[1])))
    probs = C.predict(img)
    for i, r in enumerate(records):
        target = attributes.parse_target(r["group"], C.schema)
        mass = min(float(m[i]) for m in attributes.target_mass(probs, target).values())
        assert mass >= threshold - 1e-3, (r, mass)
        assert os.path.exists(os.path.join(out, r["file"]))


def test_unverified_draw_keeps_every_sample(fitted, tmp_path):
    _, workdir, _ = fitted
    summary = distribution_draw.draw(workdir, "tone=dark:5", str(tmp_path / "u"), verify=False,
                                batch_size=64, seed=1, max_draw_factor=1, image_format="none",
                                log=lambda s: None)
    s = summary["groups"]["tone=dark"]
    assert s["drawn"] == s["count"] == 5
    assert np.load(tmp_path / "u" / "ws.npy").shape == (5, 64)


def test_draw_step_compiles_once_for_all_groups(fitted):
    config, workdir, _ = fitted
    model = distribution.load(workdir)
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    step = distribution_draw.make_draw_step(G, C, model.ae_graphdef, 4, "const")
    for g in (0, 5):
        out = step(G.state, C.state, model.ae_state, gmmlib.select(model.mixtures, g),
                   attributes.parse_target(model.groups[g], C.schema), jax.random.key(g))
        assert out[0].shape == (4, 64) and out[1].shape == (4, 64, 64, 3)
    assert step._cache_size() == 1


def test_parse_counts():
    groups = ("tone=dark,hair=long", "tone=dark")
    schema = attributes.DEMO
    assert distribution_draw.parse_counts("hair=long,tone=dark:3; tone=dark:2", schema, groups) == \
        [(0, 3), (1, 2)]
    with pytest.raises(ValueError, match="no model for group 'tone=light'"):
        distribution_draw.parse_counts("tone=light:3", schema, groups)
    for bad in ("tone=dark", "tone=dark:0", "tone=dark:x", ""):
        with pytest.raises(ValueError):
            distribution_draw.parse_counts(bad, schema, groups)


def test_too_few_samples_says_found_and_needed(tmp_path, make_config, tiny):
    config = make_config(**{**tiny, "num_samples": 256, "holdout": 0, "min_group_samples": 40})
    with pytest.raises(ValueError,
                       match=r"found .*tone=dark,hair=long: \d+;.* need 40 per group"):
        distribution.fit(config, str(tmp_path / "m"), log=lambda s: None)
    assert not os.path.exists(tmp_path / "m")


def test_cli_errors_are_one_line_exit_2(fitted, tmp_path):
    _, workdir, _ = fitted
    sample = [sys.executable, "-m", "jaxfair.sample"]
    draw, fit, none = run_all([
        sample + ["draw", f"--workdir={workdir}", "--counts=tone=dark,glasses=yes:3",
                  f"--out={tmp_path / 'x'}"],
        sample + ["fit", f"--workdir={tmp_path / 'm'}", "--config.distribution.num_samples=256",
                  "--config.distribution.holdout=0",
                  "--config.distribution.min_group_samples=40"],
        sample + ["sample"]], cwd=ROOT, timeout=300)
    r = draw
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("jaxfair.sample: error: no model for group 'tone=dark,glasses=yes'")
    assert "Traceback" not in r.stderr and not os.path.exists(tmp_path / "x")
    r = fit
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("jaxfair.sample: error: too few samples") and "need 40 per group" in err
    assert "Traceback" not in r.stderr and not os.path.exists(tmp_path / "m")
    r = none
    assert r.returncode == 2 and "first argument must be one of fit, draw" in r.stderr


def test_full_covariance_model_saves_and_loads(fitted, tmp_path):
    """The fit's mixture step with covariance 'full', on the tiny fit's own codes and
    members, saved like a fitted model: load gives the same FullGMMs back."""
    _, workdir, meta = fitted
    model = distribution.load(workdir)
    _, params = checkpoints.load(workdir, None)
    codes = jax.jit(ae.encode, static_argnums=0)(model.ae_graphdef, model.ae_state,
                                                 jnp.asarray(params["labels"]["w"]))
    members = jnp.asarray(params["labels"]["masses"] >= meta["threshold"], jnp.float32)
    gmms, _ = gmmlib.fit_groups_jit(jax.random.split(jax.random.key(0), len(model.groups)),
                                    codes, members, 2, 20, 1e-3, "full")
    full_dir = str(tmp_path / "full")
    checkpoints.save(full_dir, {**params, "mixtures": dataclasses.asdict(gmms)},
                     {**meta, "config": {**meta["config"], "covariance": "full"}})
    full = distribution.load(full_dir)
    assert isinstance(full.mixtures, gmmlib.FullGMM)
    assert full.mixtures.covariances.shape == (7, 2, 8, 8)
    np.testing.assert_array_equal(full.mixtures.covariances, gmms.covariances)
