"""The real jobs on reduced-width random stand-ins (real resolution and mapping, small
channels): --dry_run prints the plan and compiled memory and writes nothing; bad input
(a schema the classifier lacks, a budget below one candidate) is one line, exit 2, nothing
written; the main job runs end to end. ~60 CPU s together on the 2-core VM, of which ~14
make the stand-ins, compiles at 256 px the rest."""

import json
import os
import subprocess
import sys

import pytest
from standins_once import standins_once

from jaxfair.convert import standins
from jaxfair.io import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/ffhq256_fairface.py:smoke"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The three stand-ins, seed 0. Both classifiers calibrate on the same images (the
    default: those of a reduced random ffhq256 of their seed, which is the generator
    stand-in itself): the generator is drawn and the images rendered once here, not three
    and two times (deterministic functions of their arguments: the same checkpoints)."""
    d = tmp_path_factory.mktemp("standins")
    out = {}

    with standins_once():
        for name, scale in (("ffhq256", standins.CALIBRATION_SCALE), ("fairface7", 1 / 8),
                            ("fairface4", 1 / 8)):
            st = standins.create(name, seed=0, channels_scale=scale)
            out[name] = str(d / name)
            checkpoints.save(out[name], st.params, st.meta)
    return out


# The main job's settings: the dry runs below size (compile) the same stream, gated and
# render programs that the main job sizes and runs, so one of them loads the other's from
# the session's compilation cache (the threshold is part of the compiled steps).
MAIN = ("--config.threshold=0.5", "--config.planner.stream_batch=32")


def generate(models, tmp_path, *args, classifier="fairface7"):
    cmd = [sys.executable, "-m", "jaxfair.generate", f"--config={CONFIG}",
           f"--config.generator={models['ffhq256']}",
           f"--config.classifier={models[classifier]}", f"--workdir={tmp_path / 'ds'}", *args]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def test_dry_run_prints_plan_and_memory_writes_nothing(models, tmp_path):
    code, stdout, stderr = generate(models, tmp_path, *MAIN, "--dry_run",
                                    "--config.memory_budget_gb=4")
    assert code == 0, stderr
    assert "14 groups x 1 identities = 14 units in 1 steps" in stdout
    for step in ("stream", "gated", "render"):
        assert f"  {step} " in stdout and "compiled memory" in stdout
    assert "memory budget per step: 4.00 GiB" in stdout
    assert "RANDOM STAND-IN" in stderr  # the loader's warning line
    assert os.listdir(tmp_path) == []  # no work directory


def test_budget_below_one_candidate(models, tmp_path):
    code, _, stderr = generate(models, tmp_path, *MAIN, "--dry_run",
                               "--config.memory_budget_gb=0.000001")
    assert code == 2 and "step 'stream' needs" in stderr and "memory budget" in stderr
    assert stderr.strip().splitlines()[-1].startswith("jaxfair.generate: error:")
    assert os.listdir(tmp_path) == []


def test_schema_the_classifier_lacks(models, tmp_path):
    code, _, stderr = generate(models, tmp_path, classifier="fairface4")
    assert code == 2 and "gender" in stderr.splitlines()[-1]
    assert os.listdir(tmp_path) == []


def test_main_job_end_to_end(models, tmp_path):
    code, stdout, stderr = generate(models, tmp_path, *MAIN)
    assert code == 0, stderr
    assert "wrote 14 images of 14 identities in 14 groups" in stdout
    with open(tmp_path / "ds" / "plan.json") as f:
        plan = json.load(f)
    assert plan["random_standin"]["generator"]["name"] == "ffhq256"
    assert plan["random_standin"]["classifier"]["name"] == "fairface7"
    with open(tmp_path / "ds" / "manifest.json") as f:
        counts = json.load(f)["counts"]
    assert len(counts) == 14 and all(c["identities"] == 1 for c in counts.values())
