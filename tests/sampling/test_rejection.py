"""Balanced rejection sampling on the demo world, and the main job's entry point."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

import jaxfair
from jaxfair import attributes
from jaxfair.sampling import rejection

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_group_masses_is_min_over_constrained_attributes():
    schema = attributes.DEMO
    probs = {"tone": jnp.asarray([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]]),
             "hair": jnp.asarray([[0.3, 0.7], [0.95, 0.05]]),
             "glasses": jnp.asarray([[0.5, 0.5], [0.5, 0.5]])}
    groups = attributes.enumerate_groups(schema, ("tone", "hair"))
    masses = np.asarray(rejection.group_masses(probs, attributes.stack_targets(
        [t for _, t in groups])))
    names = [n for n, _ in groups]
    assert masses.shape == (6, 2)
    np.testing.assert_allclose(masses[names.index("tone=light,hair=long"), 0], 0.7, rtol=1e-6)
    np.testing.assert_allclose(masses[names.index("tone=dark,hair=short"), 1], 0.8, rtol=1e-6)
    np.testing.assert_allclose(masses[names.index("tone=dark,hair=long"), 1], 0.05, rtol=1e-5)


@pytest.fixture(scope="module")
def config():
    import importlib.util
    spec = importlib.util.spec_from_file_location("demo_cfg", os.path.join(ROOT, "configs",
                                                                           "demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("smoke")
    c.generator = os.path.join(ROOT, c.generator)
    c.classifier = os.path.join(ROOT, c.classifier)
    return c


@pytest.fixture(scope="module")
def run_dir(config, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("rej") / "out")
    summary = rejection.run(config, out, log=lambda s: None)
    return out, summary


def test_every_group_gets_its_quota(run_dir, config):
    out, summary = run_dir
    assert summary["num_images"] == 6 * config.per_group
    assert all(g["count"] == config.per_group for g in summary["groups"].values())
    assert summary["samples_drawn"] >= summary["num_images"]
    for name in summary["groups"]:
        assert len(os.listdir(os.path.join(out, "images", name))) == config.per_group


def test_records_match_latents_and_reclassify(run_dir, config):
    """Re-rendering a stored latent gives an image the classifier puts in its group."""
    out, _ = run_dir
    with open(os.path.join(out, "records.jsonl")) as f:
        records = [json.loads(line) for line in f]
    z = np.load(os.path.join(out, "latents.npy"))
    assert len(records) == len(z) and [r["latent_row"] for r in records] == list(range(len(z)))
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    probs = C.predict(G(z, config.truncation_psi))
    for i, r in enumerate(records):
        for attr, value in (part.split("=") for part in r["group"].split("_")):
            k = C.schema.attribute(attr).classes.index(value)
            assert float(probs[attr][i, k]) >= config.threshold - 1e-4
            assert r["pred"][attr]["class"] == value


def test_unknown_attribute_and_quota_errors(config, tmp_path):
    bad = config.copy_and_resolve_references()
    bad.attributes = ("tone", "race")
    with pytest.raises(attributes.TargetError, match="valid: tone, hair, glasses"):
        rejection.run(bad, str(tmp_path / "a"))
    few = config.copy_and_resolve_references()
    few.max_samples = 64
    with pytest.raises(rejection.QuotaNotMet, match="groups short"):
        rejection.run(few, str(tmp_path / "b"), log=lambda s: None)
    assert not os.listdir(tmp_path)
