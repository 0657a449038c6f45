"""The search job and its entry point: outputs, unreachable targets, bad input."""

import json
import os
import sys

import jax
import numpy as np
import pytest
from cli_runs import run_all
from demo_config import ROOT
from demo_config import load as load_config

import jaxfair
from jaxfair.judge import attributes, sizing
from jaxfair.search import builder, job, readout, spaces
from jaxfair.search import engine as eng_lib

# The engine of test_engine.make(G, C, 2, 1) (Sep_CMA_ES, P 8, S 2, one generation per
# chunk, archive 16, 8 px, threshold 0.4, the other settings the demo's = Objective's and
# Engine's defaults): the job's programs are the ones the engine tests compiled, loaded
# from the session's compilation cache, not compiled again.
SEARCH = dict(population_size=8, num_searches=2, generations_per_chunk=1, archive_capacity=16,
              score_resolution=8)


def config(gen, cls, threshold=0.4, **search):
    c = load_config()
    c.generator, c.classifier, c.threshold = gen, cls, threshold
    c.search.update(dict(SEARCH, max_generations=5, num_accepted=6, target="tone=dark"))
    c.search.update(search)
    return c


def test_job_writes_accepted_latents_that_reclassify(tiny_dirs, tmp_path):
    c = config(*tiny_dirs)
    logs = []
    summary = job.run(c, str(tmp_path / "out"), "tone=dark", log=logs.append)
    assert any("candidates/s" in line for line in logs)
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["contact_sheet.png", "latents.npy", "records.jsonl",
                                       "summary.json"]
    z = np.load(out / "latents.npy")
    with open(out / "records.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert len(z) == len(records) == summary["num_accepted"] > 0
    assert all(r["mass"]["tone"] >= 0.4 for r in records)  # accepted at the score resolution
    # Full-resolution records are what the models say now about the stored latents.
    G, C = jaxfair.load_generator(tiny_dirs[0]), jaxfair.load_classifier(tiny_dirs[1])
    probs = jax.device_get(C.predict(G(z)))
    np.testing.assert_allclose([r["mass_full"]["tone"] for r in records],
                               probs["tone"][:, 2], atol=1e-4)
    agree = np.mean([r["accepted_full"] for r in records])
    assert summary["full_resolution_agreement"] == pytest.approx(agree)


# 7-10 CPU s: threshold 1.0 is part of the compiled init and run (programs of its own).
def test_unreachable_target_reports_best_probabilities(tiny_dirs, tmp_path):
    c = config(*tiny_dirs, threshold=1.0, max_generations=3)
    with pytest.raises(readout.TargetNotReached, match=r"best target probability per attribute: "
                       r"tone 0\.\d+, hair 1\.000, glasses 1\.000"):
        job.run(c, str(tmp_path / "out"), "tone=dark", log=lambda s: None)
    assert not os.path.exists(tmp_path / "out")


def test_entry_point_exits_3_when_it_finds_fewer_than_asked(tiny_dirs, tmp_path):
    g, c = tiny_dirs
    r = run_all([[sys.executable, "-m", "jaxfair.search", f"--config.generator={g}",
                  f"--config.classifier={c}", f"--workdir={tmp_path / 'out'}",
                  "--target=tone=dark", "--config.threshold=0.4",
                  *(f"--config.search.{k}={v}" for k, v in SEARCH.items()),
                  "--config.search.max_generations=3",
                  "--config.search.num_accepted=1000"]], cwd=ROOT)[0]
    assert r.returncode == 3, r.stderr[-2000:]
    assert "jaxfair.search: short: tone=dark:" in r.stderr and "of 1000 found" in r.stderr
    with open(tmp_path / "out" / "summary.json") as f:
        summary = json.load(f)
    assert 0 < summary["num_accepted"] < summary["num_requested"] == 1000


# ~4 CPU s after test_engine's small-budget case (the same programs), 17-20 s alone: the
# micro-batch 2 and 1 programs; the engine's sizing is tested in test_engine.py.
def test_job_under_a_small_budget_scores_in_micro_batches(tiny_dirs, tmp_path):
    """``memory_budget_gb`` below the compiled memory of the configured micro-batch
    (``eval_batch=2``, the upper bound): the job's engine scores 1 candidate at a time
    (recorded in summary.json) and completes with latents that meet the threshold. Not
    compared with the whole-batch run: another batch size rounds differently and the
    strategies follow other paths."""
    c = config(*tiny_dirs, eval_batch=2)
    G, C = jaxfair.load_generator(tiny_dirs[0]), jaxfair.load_classifier(tiny_dirs[1])
    engine = builder.build(builder.Settings.from_config(c), G, C)
    target = attributes.parse_target("tone=dark", C.schema)
    shapes = (spaces.estimate_prior(G, jax.random.key(0), n=16),
              attributes.stack_targets([target] * 2), jax.random.split(jax.random.key(0), 2))
    factory = eng_lib.run_factory(engine, G.state, C.state, *shapes)
    c.memory_budget_gb = (sizing.compiled_memory(*factory(1)).total + 1) / sizing.GIB
    summary = job.run(c, str(tmp_path / "out"), "tone=dark", log=lambda s: None)
    chosen = summary["batch_sizes"]["evaluate"]
    assert (chosen["configured"], chosen["batch"]) == (2, 1)
    with open(tmp_path / "out" / "records.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert len(records) == summary["num_accepted"] > 0
    assert all(r["mass"]["tone"] >= 0.4 for r in records)


@pytest.mark.parametrize("key,value,match", [
    ("space", "x", "unknown space"), ("population_size", 0, "population_size must be >= 1"),
    ("feature_radius", -0.1, "feature_radius must be >= 0"),
    ("dtype", "float16", "dtype must be float32 or bfloat16"),
    ("eval_batch", -1, "eval_batch must be >= 0")])
def test_bad_search_settings(tiny_G, tiny_C, key, value, match):
    c = config("g", "c", **{key: value})
    with pytest.raises(ValueError, match=match):
        builder.build(builder.Settings.from_config(c), tiny_G, tiny_C)


# 15-19 CPU s: six entry points, each paying Python's imports and the model loads.
def test_entry_point_bad_input_one_line_exit_2(tiny_dirs, tmp_path):
    g, c = tiny_dirs
    base = [sys.executable, "-m", "jaxfair.search", f"--config.generator={g}",
            f"--config.classifier={c}", f"--workdir={tmp_path / 'out'}"]
    cases = (["--config.search.strategy=Nelder_Mead"], ["--target=tone=purple"],
             ["--target=eyes=blue"], ["--config.threshold=1.5"],
             ["--config.search.strategy=Open_ES", "--config.search.population_size=7"],
             ["--config.search.strategy=CMA_ES", "--config.search.space=wplus"])
    for args, r in zip(cases, run_all([base + args for args in cases], cwd=ROOT)):
        errors = [line for line in r.stderr.splitlines() if "error:" in line]
        assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, \
            (args, r.stderr[-2000:])
    assert not os.listdir(tmp_path)


def test_target_language_errors_name_valid_choices():
    with pytest.raises(attributes.TargetError, match="valid: light, medium, dark"):
        attributes.parse_target("tone=purple", attributes.DEMO)
