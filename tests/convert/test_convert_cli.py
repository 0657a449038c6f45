"""python -m jaxfair.convert: success, and one clear line + exit 2 for every bad input."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch_writer
from rosinality import to_rosinality

from jaxfair.convert import stylegan2 as sg_import
from jaxfair.convert import torch_pickle


@pytest.fixture(scope="module")
def ros_sd(sg2_pkl):
    cfg, flat = sg_import.from_nvidia(torch_pickle.load_file(sg2_pkl))
    return to_rosinality(flat, cfg.block_resolutions), flat["mapping.w_avg"]


def test_converts_nvidia_pickle(tmp_path, convert_cli, sg2_pkl):
    out = tmp_path / "ffhq"
    code, stdout, _ = convert_cli(f"--src={sg2_pkl}", f"--out={out}")
    assert code == 0 and "wrote stylegan2 checkpoint" in stdout
    assert sorted(os.listdir(out)) == ["meta.json", "params"]
    assert sorted(os.listdir(tmp_path)) == ["ffhq"]


def _bad_cases(tmp_path, sg2_pkl, ros_sd):
    data = Path(sg2_pkl).read_bytes()
    sd, w_avg = ros_sd
    cases = {}

    def write(name, content):
        p = tmp_path / name
        p.write_bytes(content)
        return str(p)

    def ros(name, mutate):
        d = dict(sd)
        mutate(d)
        p = str(tmp_path / name)
        torch_writer.save_zip({"g_ema": d, "latent_avg": w_avg}, p)
        return p

    cases["missing"] = (str(tmp_path / "nope.pkl"), "no such file")
    cases["truncated"] = (write("t.pkl", data[: len(data) // 3]), "truncated")
    cases["corrupt"] = (write("c.pkl", data[:40] + b"\x07" * 500), "corrupt")
    cases["no_g_ema"] = (write("d.pkl", __import__("pickle").dumps({"G": 1, "D": 2})),
                         "no 'G_ema'")
    cases["unknown"] = (write("u.pt", b"just some text\n"), "unknown format")
    cases["unknown_pickle"] = (write("l.pkl", __import__("pickle").dumps([1, 2])),
                               "unknown checkpoint format")
    cases["missing_key"] = (ros("m.pt", lambda d: d.pop("convs.1.activate.bias")),
                            "missing key 'convs.1.activate.bias'")
    cases["extra_key"] = (ros("e.pt", lambda d: d.update({"convs.1.foo": np.ones(2)})),
                          "unexpected keys in g_ema: convs.1.foo")
    cases["shape"] = (ros("s.pt", lambda d: d.update(
        {"convs.1.activate.bias": np.ones(7, np.float32)})), "shape mismatch")
    return cases


@pytest.mark.parametrize("case", ["missing", "truncated", "corrupt", "no_g_ema", "unknown",
                                  "unknown_pickle", "missing_key", "extra_key", "shape"])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, convert_cli, sg2_pkl, ros_sd, case):
    src, expected = _bad_cases(tmp_path, sg2_pkl, ros_sd)[case]
    before = set(os.listdir(tmp_path))
    out = tmp_path / "out"
    code, stdout, stderr = convert_cli(f"--src={src}", f"--out={out}")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and src in lines[0], stderr
    assert "Traceback" not in stderr
    assert set(os.listdir(tmp_path)) == before  # nothing created, no temp dirs


def test_nonempty_output_dir_is_refused(tmp_path, convert_cli, sg2_pkl):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, _, stderr = convert_cli(f"--src={sg2_pkl}", f"--out={out}")
    assert code == 2 and "exists and is not empty" in stderr
    assert os.listdir(out) == ["keep.txt"]


def test_subprocess_exit_status_and_single_line(tmp_path, sg2_pkl):
    """The real entry point: exit 2 and one line, no traceback (absl's app.run included)."""
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(Path(sg2_pkl).read_bytes()[:1000])
    r = subprocess.run([sys.executable, "-m", "jaxfair.convert", f"--src={bad}",
                        f"--out={tmp_path / 'o'}"], capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
