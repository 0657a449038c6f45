"""The shipped demo checkpoints (checkpoints/demo) against the world's ground truth.

Smaller versions of the measurements in checkpoints/demo/report.json (5,000 samples each,
made by ``python -m jaxfair.demo.evaluate``), with the same acceptance thresholds.
"""

import json
import os

import pytest

import jaxfair
from jaxfair.demo import evaluate, world

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "checkpoints", "demo")


@pytest.fixture(scope="module")
def G():
    return jaxfair.load_generator(os.path.join(DEMO, "generator"))


@pytest.fixture(scope="module")
def C():
    return jaxfair.load_classifier(os.path.join(DEMO, "classifier"))


@pytest.fixture(scope="module")
def samples(G, C, once):
    return once("demo_samples", lambda: evaluate.sample_generator(G, C, n=2000, batch=250,
                                                                  seed=123))


def test_checkpoints_are_small_and_documented():
    total = sum(os.path.getsize(os.path.join(d, f))
                for d, _, files in os.walk(DEMO) for f in files)
    assert total <= 20 * 2 ** 20
    for part in ("generator", "classifier"):
        with open(os.path.join(DEMO, part, "meta.json")) as f:
            source = json.load(f)["source"]
        assert source["command"].startswith("python -m jaxfair.demo.train")
        assert source["fit"]["seed"] == 0 and source["train_seconds"] > 0


def test_classifier_accuracy_on_held_out_renders(C):
    acc = evaluate.classifier_accuracy(C, n=1000, batch=500, seed=77)
    assert set(acc) == set(world.SCHEMA)
    for attr, a in acc.items():
        assert a >= 0.98, (attr, a)


def test_generator_keeps_the_world_bias(samples):
    report = evaluate.generator_report(samples)
    tone = report["tone"]["classifier_distribution"]
    for cls, p in zip(world.SCHEMA["tone"], world.BIAS["tone"]):
        assert abs(tone[cls] - p) <= 0.05, (cls, tone[cls])
    hair = report["hair"]["classifier_distribution"]
    assert abs(hair["long"] - 0.30) <= 0.05


def test_classifier_agrees_with_ground_truth_on_generator_samples(samples):
    report = evaluate.generator_report(samples)
    assert report["tone"]["agreement"] >= 0.95
    assert report["hair"]["agreement"] >= 0.95


def test_group_sheets_cover_every_tone_and_hair(samples):
    sheets = evaluate.group_sheets(samples, per_group=4)
    for tone in world.SCHEMA["tone"]:
        for hair in world.SCHEMA["hair"]:
            assert any(name.startswith(f"tone={tone}_hair={hair}") for name in sheets)
