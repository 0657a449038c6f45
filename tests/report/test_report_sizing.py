"""The dataset report's batched steps within a memory budget: the configured batch's own
program when it fits (bitwise), smaller batches below it (listed in report.json)."""

import os

import jax
import ml_collections
import numpy as np
import pytest
from dataset_writer import DEMO, write_dataset

import jaxfair
from jaxfair.io import images as imlib
from jaxfair.judge import render, sizing
from jaxfair.report import dataset_report, reclassify

GROUPS = ["tone=light,hair=short", "tone=light,hair=long"]
RC = dict(sample_per_group=8, sheet_size=8, sheet_cols=4, thumb_size=32, diversity_max=100,
          near_duplicate_fraction=0.05, batch_size=2, seed=0, reference_size=0,
          reference_budget=64, reference_permutations=19)


@pytest.fixture(scope="module")
def models():
    return (jaxfair.load_generator(os.path.join(DEMO, "generator")),
            jaxfair.load_classifier(os.path.join(DEMO, "classifier")))


def test_reclassify_is_the_old_program_when_the_batch_fits(models):
    G, C = models
    images = np.asarray(imlib.to_uint8(G(jax.random.normal(jax.random.key(0),
                                                           (5, G.config.z_dim)))))
    steps = sizing.Steps(1 << 40)
    probs = reclassify.predict(C, images, 4, steps)
    assert [(s.name, s.batch) for s in steps.sized] == [("reclassify", 4)]
    assert steps.reduced() == {}
    # What the report computed before it was sized: C.predict per padded batch.
    old = render.batched(lambda x: C.predict(reclassify.from_uint8(x)), images, 4)
    assert all(np.array_equal(old[a], probs[a]) for a in old)


# ~16 CPU s on the 2-core VM (two reports at batches 2 and 1); the sizing itself in the
# default run: tests/judge/test_sizing.py, test_engine.py
def test_report_under_a_small_budget_runs_smaller_batches(models, tmp_path):
    """A budget below the compiled memory of the re-classification at its configured batch
    (``report.batch_size`` 2): it and the features run 1 image at a time, listed in
    report.json's ``batch_sizes``. (The re-render and the reference draw size the same
    way, ``sizing.Steps``; left out here for time.) Another batch size rounds differently
    (~1e-6), so the report is compared with the unbudgeted one on what that cannot move:
    counts and label agreement, and its probability differences to 1e-4."""
    G, C = models
    root = str(tmp_path / "ds")
    write_dataset(root, G, C, GROUPS, 3)
    rc = ml_collections.ConfigDict(RC)
    whole = dataset_report.run(root, rc, out=str(tmp_path / "whole"), log=lambda s: None)
    hw = (G.config.img_resolution,) * 2
    budget = sizing.compiled_memory(*reclassify.classify_factory(C, hw)(1)).total
    logs = []
    small = dataset_report.run(root, rc, out=str(tmp_path / "small"), log=logs.append,
                               budget_bytes=budget)
    assert "batch_sizes" not in whole
    assert small["batch_sizes"] == {
        name: {"configured": 2, "batch": 1, "compiled_bytes": small["batch_sizes"][name][
            "compiled_bytes"]} for name in ("reclassify", "features")}
    assert all(r["compiled_bytes"] <= budget for r in small["batch_sizes"].values())
    assert any(line.startswith("step reclassify: batch 1 (configured 2)") for line in logs)
    assert small["counts"] == whole["counts"]
    assert small["agreement"]["attributes"] == whole["agreement"]["attributes"]
    for a, d in whole["agreement"]["prob_abs_diff"].items():
        assert small["agreement"]["prob_abs_diff"][a]["max"] == pytest.approx(d["max"],
                                                                              abs=1e-4)
