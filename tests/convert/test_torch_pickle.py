"""The restricted reader of torch/NVIDIA files: formats, and refusal to run code."""

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch_writer

from jaxfair.convert import torch_pickle
from jaxfair.convert.guard import CheckpointError


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')",))


def test_nvidia_pickle_tensors_and_attributes(sg2_pkl):
    top = torch_pickle.load_file(sg2_pkl)
    g = top["G_ema"]
    assert g.class_name == "Generator" and g.state["z_dim"] == 48
    w = g.state["_modules"]["mapping"].state["_modules"]["fc0"].state["_parameters"]["weight"]
    assert w.shape == (32, 48) and w.dtype == np.float32 and np.isfinite(w).all()
    assert top["D"] is None


def test_zip_format_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    sd = {"a": a, "b": np.arange(5, dtype=np.int64), "t": a.T.copy(), "s": 2.5}
    path = str(tmp_path / "x.pt")
    torch_writer.save_zip(sd, path)
    got = torch_pickle.load_file(path)
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["t"], a.T)
    np.testing.assert_array_equal(got["b"], np.arange(5))
    assert got["s"] == 2.5


def test_legacy_stream_with_views(golden_dir):
    """A torch 2.13 ``torch.save(..., _use_new_zipfile_serialization=False)`` file: storage
    bytes follow the pickle, and tensors are strided views (transposed, offset, stepped)."""
    got = torch_pickle.load_file(os.path.join(golden_dir, "torch_legacy_views.pt"))
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(got["t"], base.T)
    np.testing.assert_array_equal(got["h"], base[1:].astype(np.float16))
    assert got["h"].dtype == np.float16
    np.testing.assert_array_equal(got["i"], np.arange(5)[::2])


def test_reads_real_torchvision_file(golden_dir):
    sd = torch_pickle.load_file(os.path.join(golden_dir, "resnet34_w16.pt"))
    assert sd["conv1.weight"].shape == (16, 3, 7, 7)
    assert sd["fc.weight"].shape == (18, 128)


def test_matches_torch_load_when_torch_is_installed(golden_dir, tmp_path):
    """Cross-check against torch itself (the reader never needs it)."""
    torch = pytest.importorskip("torch")
    path = os.path.join(golden_dir, "resnet34_w16.pt")
    ours = torch_pickle.load_file(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert set(ours) == set(theirs)
    for k, v in theirs.items():
        np.testing.assert_array_equal(ours[k], v.numpy())
    written = str(tmp_path / "w.pt")
    torch_writer.save_zip({"x": np.ones((2, 3), np.float32)}, written)
    np.testing.assert_array_equal(torch.load(written, weights_only=True)["x"].numpy(), 1.0)
    # torch's own legacy (pre-1.6) stream, including a non-contiguous view of a storage.
    legacy = str(tmp_path / "legacy.pt")
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    torch.save({"t": base.t(), "h": base[1:].half()}, legacy,
               _use_new_zipfile_serialization=False)
    got = torch_pickle.load_file(legacy)
    np.testing.assert_array_equal(got["t"], base.t().numpy())
    np.testing.assert_array_equal(got["h"], base[1:].half().numpy())


@pytest.mark.parametrize("payload", [_Evil, _EvalEvil])
def test_code_in_a_pickle_is_never_run(tmp_path, payload):
    marker = tmp_path / "pwned"
    obj = payload(f"touch {marker}") if payload is _Evil else payload()
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": obj}, protocol=4))
    with pytest.raises(CheckpointError, match="refused to load global"):
        torch_pickle.load_file(str(path))
    assert not marker.exists()


def test_code_in_a_zip_archive_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_Evil(f"touch {marker}"), protocol=2))
    with pytest.raises(CheckpointError, match="os|posix|system"):
        torch_pickle.load_file(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_plain_numpy_arrays_in_a_pickle(tmp_path, protocol):
    """ada-pytorch pickles may carry numpy arrays in module attributes."""
    path = tmp_path / "np.pkl"
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    path.write_bytes(pickle.dumps({"a": a, "s": np.float64(1.5)}, protocol=protocol))
    got = torch_pickle.load_file(str(path))
    np.testing.assert_array_equal(got["a"], a)
    assert got["a"].dtype == np.float32 and got["s"] == 1.5
    # Also the numpy 1.x spelling of the same global.
    legacy = pickle.dumps({"a": a}, protocol=2).replace(b"numpy._core.multiarray",
                                                        b"numpy.core.multiarray")
    path.write_bytes(legacy)
    np.testing.assert_array_equal(torch_pickle.load_file(str(path))["a"], a)


def test_protocol2_bytes_via_codecs(tmp_path):
    path = tmp_path / "p2.pkl"
    path.write_bytes(pickle.dumps({"x": b"\x00\xffab"}, protocol=2))
    assert torch_pickle.load_file(str(path)) == {"x": b"\x00\xffab"}


@pytest.mark.parametrize("make", ["empty", "truncated", "garbage", "text"])
def test_bad_files(tmp_path, sg2_pkl, make):
    data = Path(sg2_pkl).read_bytes()
    content = {"empty": b"", "truncated": data[: len(data) // 2],
               "garbage": data[:2] + bytes(range(256)) * 8, "text": b"hello world\n"}[make]
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        torch_pickle.load_file(str(path))


def test_truncated_zip(tmp_path):
    path = str(tmp_path / "x.pt")
    torch_writer.save_zip({"a": np.ones(1000, np.float32)}, path)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) - 300])
    with pytest.raises(CheckpointError):
        torch_pickle.load_file(path)
