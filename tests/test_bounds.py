"""Counts, scales and chunk numbers out of bounds (or NaN): one line, exit status 2, nothing
written, before any model compiles; and the pure checks behind them."""

import math
import os
import subprocess
import sys

import pytest

from jaxfair.distribution import draw
from jaxfair.pipeline import variations as var

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, tmp_path):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    p = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    return p.returncode, p.stderr


@pytest.mark.parametrize("args, message", [
    (["jaxfair.sample", "draw", "--workdir={tmp}/model", "--out={tmp}/out",
      "--counts=tone=dark,hair=long:99999999999"], "more than the limit of 100000"),
    (["jaxfair.directions", "--out={tmp}/out.npz", "--directions=hair=long:nan", "--num=64"],
     "scale must be finite and in (0, 10], got nan"),
    (["jaxfair.benchmark", "--chunks=0", "--out={tmp}/out.json"], "--chunks must be >= 1"),
])
def test_out_of_bounds_is_one_line_and_writes_nothing(tmp_path, args, message):
    rc, err = run(*(a.format(tmp=tmp_path) for a in args), tmp_path=tmp_path)
    lines = err.strip().splitlines()
    assert rc == 2 and "Traceback" not in err and message in lines[-1], err
    assert sum("error" in line for line in lines) == 1, err
    assert os.listdir(tmp_path) == []


def test_counts_are_bounded_before_any_model_loads():
    assert draw.split_counts("tone=dark:3; tone=light,hair=long:4") == [
        ("tone=dark", 3), ("tone=light,hair=long", 4)]
    assert draw.split_counts(f"a=b:{draw.MAX_DRAW}") == [("a=b", draw.MAX_DRAW)]
    with pytest.raises(ValueError, match="more than the limit"):
        draw.split_counts(f"a=b:{draw.MAX_DRAW // 2};c=d:{draw.MAX_DRAW // 2 + 1}")
    for bad in ("a=b:0", "a=b:-1", "a=b:nan", "a=b", ""):
        with pytest.raises(ValueError):
            draw.split_counts(bad)


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf, 0.0, -1.0, 10.5])
def test_direction_scales_must_be_finite_and_in_range(scale):
    with pytest.raises(ValueError, match="scale must be finite"):
        var.check_scale(scale, "here")


def test_sane_direction_scales_pass():
    assert var.check_scale(0.5, "here") == 0.5 and var.check_scale(10.0, "here") == 10.0
