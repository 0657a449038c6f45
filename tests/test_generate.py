"""The main job's unguided mode (here on the golden tiny generator) and its entry point."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxfair.sampling import unguided

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config_module(name):
    spec = importlib.util.spec_from_file_location(f"configs_{name}",
                                                  os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = load_config_module("demo")


def config(**kw):
    c = demo.get_config("unguided")
    c.generator = os.path.join(ROOT, "tests", "golden", "sg2_tiny.pkl")
    c.num_images, c.batch_size = 8, 4
    c.update(kw)
    return c


def test_run_writes_images_latents_and_summary(tmp_path):
    out = str(tmp_path / "run")
    summary = unguided.run(config(num_images=6, batch_size=4), out, log=lambda s: None)
    assert summary["num_images"] == 6 and summary["resolution"] == 32
    files = sorted(os.listdir(os.path.join(out, "images")))
    assert files == [f"{i:06d}.png" for i in range(6)]
    im = np.asarray(Image.open(os.path.join(out, "images", files[0])))
    assert im.shape == (32, 32, 3) and im.dtype == np.uint8 and im.std() > 0
    z = np.load(os.path.join(out, "latents.npy"))
    assert z.shape == (6, 48) and z.dtype == np.float32
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["generator_source"]["format"] == "nvidia-pkl"
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no temporary directory left


def test_output_is_a_function_of_seed_not_batching(tmp_path):
    a = str(tmp_path / "a")
    b = str(tmp_path / "b")
    unguided.run(config(num_images=4, batch_size=4, seed=3), a, log=lambda s: None)
    unguided.run(config(num_images=4, batch_size=4, seed=3), b, log=lambda s: None)
    np.testing.assert_array_equal(np.load(f"{a}/latents.npy"), np.load(f"{b}/latents.npy"))
    c = str(tmp_path / "c")
    unguided.run(config(num_images=4, batch_size=4, seed=4), c, log=lambda s: None)
    assert not np.array_equal(np.load(f"{a}/latents.npy"), np.load(f"{c}/latents.npy"))


@pytest.mark.parametrize("bad,match", [
    ({"num_images": 0}, "num_images"), ({"noise_mode": "fixed"}, "noise_mode"),
    ({"image_format": "gif"}, "image_format"), ({"truncation_psi": -1.0}, "truncation_psi")])
def test_bad_config_values(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        unguided.run(config(**bad), str(tmp_path / "x"))
    assert not os.listdir(tmp_path)


def test_entry_point_bad_input_one_line_exit_2(tmp_path):
    """Bad overrides and a missing generator: one line, exit 2, nothing written."""
    for args in (["--config.num_images=abc"], ["--config.method=magic"],
                 ["--config.generator=missing"], ["--config=configs/missing.py"]):
        r = subprocess.run([sys.executable, "-m", "jaxfair.generate",
                            "--config=configs/demo.py:unguided", *args,
                            f"--workdir={tmp_path / 'out'}"],
                           cwd=ROOT, capture_output=True, text=True)
        errors = [line for line in r.stderr.splitlines() if "error:" in line]
        assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not os.listdir(tmp_path)
