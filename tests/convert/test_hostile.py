"""Hostile checkpoint files: crashes, out-of-bounds reads, poisoning, bombs, malformed structure.

Every file here is crafted in the test. Each class of attack is read in ONE subprocess
(``hostile_worker.py``) with the address space capped at 1.5 GB and a 20 s watchdog per
file; after each file the worker reads the golden files again and compares them bit for bit
with their first reading. The tests assert that every hostile file is refused with one
``CheckpointError`` line (no other exception type escapes the importer), that the golden
files are intact after each, and that the worst time and memory stay small. A few files also
go through the real ``python -m jaxfair.convert``: exit 2, one line, nothing written.
See docs/security.md for what is guaranteed.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_classifier_import import keras_layers, random_backbone, random_head, write_keras_h5

import jaxfair
from jaxfair.convert import torch_pickle
from jaxfair.convert.torch_pickle import CheckpointError
from jaxfair.errors import JaxfairError

MEM_CAP = 1536 << 20
CASE_TIMEOUT = 20
WORKER = os.path.join(os.path.dirname(__file__), "hostile_worker.py")
GOLDEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "golden")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Subprocesses import this checkout's jaxfair, whatever is installed.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
GOLDEN_PKL = os.path.join(GOLDEN, "sg2_tiny.pkl")
GOLDEN_PT = os.path.join(GOLDEN, "resnet34_w16.pt")
# The worst case (time, memory) over each class, collected for the summary test.
MEASURED: dict[str, dict] = {}


# Pickle opcodes, written by hand: the point is to write what no pickler would. -------------

def g(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def s(text: str) -> bytes:
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def i(n: int | float) -> bytes:
    if isinstance(n, float):
        return b"G" + struct.pack(">d", n)
    if -(1 << 31) <= n < 1 << 31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def tup(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


def tensor(offset, size, stride, numel, key="0", storage="FloatStorage") -> bytes:
    """``torch._utils._rebuild_tensor_v2`` of storage ``key`` with any geometry at all."""
    pid = b"(" + s("storage") + g("torch", storage) + s(key) + s("cpu") + i(numel) + b"tQ"
    return (g("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + i(offset)
            + tup(map(i, size)) + tup(map(i, stride)) + b"\x89"
            + g("collections", "OrderedDict") + b")R" + b"tR")


def state_dict(entries: dict[str, bytes]) -> bytes:
    body = b"".join(s(k) + v + b"s" for k, v in entries.items())
    return b"\x80\x02}" + body + b"."


def torch_zip(path, pkl: bytes, storages: dict[str, bytes], compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compress) as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
    return str(path)


def legacy_stream(pkl: bytes, storages: list[tuple[str, int, bytes]]) -> bytes:
    """Legacy torch.save: magic, protocol, sys_info, pickle, keys, then (count, bytes) each."""
    out = (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
           + pickle.dumps({"little_endian": True}, protocol=2) + pkl
           + pickle.dumps([k for k, _, _ in storages], protocol=2))
    for _, count, raw in storages:
        out += struct.pack("<q", count) + raw
    return out


def tuple_chain(levels: int) -> bytes:
    """Pushes t_levels with t_0 = None, t_k = (t_{k-1}, t_{k-1}): 2**levels to hash or print.

    The stream is linear in ``levels`` thanks to the memo (MEMOIZE, then GET twice)."""
    out = b"N\x94"
    for k in range(levels):
        out += b"0h" + bytes([k]) + b"h" + bytes([k]) + b"\x86\x94"
    return out


def write(tmp: Path, name: str, data: bytes) -> str:
    p = tmp / name
    p.write_bytes(data)
    return str(p)


# One builder per class of attack: name -> path. ---------------------------------------------

def tensor_cases(tmp: Path) -> dict[str, str]:
    four = np.arange(4, dtype=np.float32).tobytes()

    def pt(name, offset, size, stride, numel=4, raw=four):
        return torch_zip(tmp / f"{name}.pt", state_dict({"w": tensor(offset, size, stride, numel)}),
                         {"0": raw})

    return {
        "negative_stride": pt("neg_stride", 3, (4,), (-(1 << 40),)),
        "negative_stride_small": pt("neg_stride1", 3, (4,), (-1,)),
        "negative_offset": pt("neg_offset", -(1 << 20), (2,), (1,)),
        "negative_size": pt("neg_size", 0, (-1, 4), (4, 1)),
        "extent_past_storage": pt("oob", 0, (4, 4), (4, 1)),
        "scalar_past_storage": pt("oob0", 9, (), ()),
        "huge_numel_stride0": pt("stride0", 0, (1 << 40,), (0,)),
        "huge_numel_stride0_2d": pt("stride0b", 0, (1 << 20, 1 << 20), (0, 0)),
        "rank_mismatch": pt("rank", 0, (2, 2), (1,)),
        "too_many_dims": pt("ndim", 0, (1,) * 40, (1,) * 40),
        "float_size": pt("float", 0, (4.0,), (1,)),
        "storage_numel_past_entry": pt("numel", 0, (4,), (1,), numel=1 << 40),
        "legacy_numel_bomb": write(tmp, "legacy.pt", legacy_stream(
            state_dict({"w": tensor(0, (4,), (1,), 1 << 40, key="7")}), [("7", 4, four)])),
        "legacy_negative_stride": write(tmp, "legacy2.pt", legacy_stream(
            state_dict({"w": tensor(3, (4,), (-(1 << 40),), 4, key="7")}), [("7", 4, four)])),
    }


def bomb_cases(tmp: Path) -> dict[str, str]:
    big = struct.pack("<Q", 1 << 40)
    return {
        "memo_index_9_bytes": write(tmp, "memo.pkl", b"\x80\x04Nr\xff\xff\xff\x7f."),
        "memo_get_unset": write(tmp, "get.pkl", b"\x80\x04j\xff\xff\xff\x7f."),
        "binbytes8": write(tmp, "bb8.pkl", b"\x80\x04\x8e" + big + b"ab."),
        "binunicode8": write(tmp, "bu8.pkl", b"\x80\x04\x8d" + big + b"ab."),
        "bytearray8": write(tmp, "ba8.pkl", b"\x80\x05\x96" + big + b"ab."),
        "frame": write(tmp, "frame.pkl", b"\x80\x04\x95" + big + b"N."),
        "long4": write(tmp, "long4.pkl", b"\x80\x02\x8b\xff\xff\xff\x7fab."),
        "mark_nesting": write(tmp, "marks.pkl", b"\x80\x02" + b"(" * 200_000 + b"N."),
        "tuple_nesting": write(tmp, "tuples.pkl", b"\x80\x02N" + b"\x85" * 200_000 + b"."),
        "list_nesting": write(tmp, "lists.pkl", b"\x80\x02]" + b"]" * 5000 + b"a" * 5000 + b"."),
        "object_count": write(tmp, "count.pkl", b"\x80\x02(" + b"]" * 700_000 + b"l."),
        "dict_key_exponential": write(tmp, "key.pkl", b"\x80\x04}" + tuple_chain(60)
                                      + b"Ns."),
        "set_element_exponential": write(tmp, "set.pkl", b"\x80\x04\x8f(" + tuple_chain(60)
                                         + b"\x90."),
        "frozenset_exponential": write(tmp, "fset.pkl", b"\x80\x04(" + tuple_chain(60)
                                       + b"\x91."),
        "set_call_exponential": write(tmp, "setcall.pkl", b"\x80\x04" + g("builtins", "set")
                                      + b"]" + tuple_chain(60) + b"a\x85R."),
        "ordered_dict_pairs_exponential": write(
            tmp, "od.pkl", b"\x80\x04" + g("collections", "OrderedDict") + b"](" + tuple_chain(60)
            + b"Nla\x85R."),
        "zip_bomb_ratio": _zip_bomb(tmp / "bomb.pt", 64 << 20),
        "zip_declared_sizes": _zip_declared(tmp / "declared.pt"),
        "zip_bzip2": torch_zip(tmp / "bz.pt", state_dict({}), {}, zipfile.ZIP_BZIP2),
    }


def _zip_bomb(path: Path, n: int) -> str:
    """A storage of ``n`` zero bytes, deflated to about n/1000."""
    pkl = state_dict({"w": tensor(0, (n // 4,), (1,), n // 4)})
    return torch_zip(path, pkl, {"0": bytes(n)}, zipfile.ZIP_DEFLATED)


def _zip_declared(path: Path) -> str:
    """Central directory entries that claim 4 GB each (sizes patched after writing)."""
    torch_zip(path, state_dict({}), {"0": b"x" * 64})
    data = bytearray(path.read_bytes())
    cd = data.rfind(b"PK\x01\x02")  # the last entry's central directory record
    data[cd + 24:cd + 28] = struct.pack("<I", 0xFFFFFFF0)  # uncompressed size
    path.write_bytes(bytes(data))
    return str(path)


def persistent_id_cases(tmp: Path) -> dict[str, str]:
    deep = b"\x80\x02}" + s("w") + b"N" + b"\x85" * 100_000 + b"Qs."
    wide = b"\x80\x04}" + s("w") + tuple_chain(50) + b"Qs."
    return {"deep_persistent_id": torch_zip(tmp / "pid_deep.pt", deep, {}),
            "exponential_persistent_id": torch_zip(tmp / "pid_exp.pt", wide, {}),
            "persistent_id_in_plain_pickle": write(tmp, "pid.pkl", b"\x80\x02NQ."),
            "storage_key_exponential": torch_zip(
                tmp / "key.pt", b"\x80\x04}" + s("w") + b"(" + s("storage")
                + g("torch", "FloatStorage") + tuple_chain(50) + s("cpu") + i(4) + b"tQs.", {})}


def poison_cases(tmp: Path) -> dict[str, str]:
    """BUILD on the allow-listed globals themselves; each would change what later loads see."""
    f8 = g("numpy", "dtype") + tup([s("f8"), b"\x89", b"\x88"]) + b"R"
    poison_dtype = b"}" + s("dtype") + f8 + b"s"

    def build(target: bytes, state: bytes) -> bytes:
        return b"\x80\x02" + target + state + b"b."

    return {
        "build_storage_type": write(tmp, "p1.pkl", build(g("torch", "FloatStorage"),
                                                         poison_dtype)),
        "build_storage_type_slots": write(tmp, "p2.pkl", build(
            g("torch.storage", "FloatStorage"), b"(N" + poison_dtype + b"t")),
        "build_easydict_class": write(tmp, "p3.pkl", build(g("dnnlib.util", "EasyDict"),
                                                           b"(N}" + s("keys") + b"Nst")),
        "build_namespace_class": write(tmp, "p4.pkl", build(g("argparse", "Namespace"),
                                                            b"(N}" + s("x") + b"Nst")),
        "build_function": write(tmp, "p5.pkl", build(g("torch._utils", "_rebuild_tensor_v2"),
                                                     b"}" + s("__code__") + b"Ns")),
        "build_via_memo": write(tmp, "p6.pkl", b"\x80\x02" + g("torch", "FloatStorage")
                                + b"q\x000h\x00" + poison_dtype + b"b."),
        "build_on_tensor_result": torch_zip(
            tmp / "p7.pt", b"\x80\x02" + tensor(0, (4,), (1,), 4) + b"}" + s("x") + b"Nsb.",
            {"0": bytes(16)}),
        "poisoned_then_valid_in_one_zip": torch_zip(
            tmp / "p8.pt", b"\x80\x02" + g("torch", "FloatStorage") + poison_dtype + b"b0"
            + state_dict({"w": tensor(0, (4,), (1,), 4)})[2:], {"0": bytes(16)}),
        "global_not_allowed": write(tmp, "p9.pkl", b"\x80\x02" + g("os", "system")
                                    + tup([s("true")]) + b"R."),
        "call_a_value_global": write(tmp, "p10.pkl", b"\x80\x02" + g("numpy", "ndarray")
                                     + tup([tup([i(1 << 40)])]) + b"R."),
        "inst_opcode": write(tmp, "p11.pkl", b"\x80\x02(" + b"icollections\nOrderedDict\n."),
    }


# NVIDIA-shaped pickles: the golden network, re-pickled with one field broken. -------------

def _fake_persistence(monkeypatch):
    """A module named like NVIDIA's, so pickle can name the reconstruction function."""
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("only for pickling")

    _reconstruct_persistent_obj.__module__ = mod.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", mod)
    return _reconstruct_persistent_obj


class _Persistent:
    def __init__(self, fn, meta):
        self.fn, self.meta = fn, meta

    def __reduce__(self):
        return self.fn, (self.meta,)


def _plain(x, fn):
    """Reader output -> picklable plain data (dicts, numpy arrays, NVIDIA-style modules)."""
    if isinstance(x, _Persistent):
        return x
    if isinstance(x, torch_pickle.PersistentObj):
        return _Persistent(fn, {"type": "class", "version": x.version, "module_src": "",
                                "class_name": x.class_name, "state": _plain(x.state, fn)})
    if isinstance(x, dict):
        return {k: _plain(v, fn) for k, v in x.items()}
    if isinstance(x, list):  # tuples are left alone: the exponential chains are tuples
        return [_plain(v, fn) for v in x]
    if isinstance(x, np.ndarray):
        return np.array(x)
    return x


def nvidia_cases(tmp: Path, monkeypatch) -> dict[str, str]:
    fn = _fake_persistence(monkeypatch)
    chain = pickle.loads(b"\x80\x04" + tuple_chain(40) + b".")  # cheap to pickle (memo)

    def variant(name, edit):
        top = torch_pickle.load_file(GOLDEN_PKL)
        edit(top["G_ema"])
        path = tmp / f"{name}.pkl"
        path.write_bytes(pickle.dumps(_plain(top, fn), protocol=4))
        return str(path)

    def sub(g_ema, *names):
        for n in names:
            g_ema = g_ema.state["_modules"][n]
        return g_ema

    cases = {
        "missing_modules": lambda g: g.state.pop("_modules"),
        "string_bias_gain": lambda g: sub(g, "mapping", "fc0").state.update(bias_gain="x"),
        "modules_is_list": lambda g: sub(g, "synthesis").state.update(_modules=[1]),
        "exponential_activation": lambda g: sub(g, "mapping", "fc1").state.update(
            activation=chain),
        "exponential_architecture": lambda g: sub(g, "synthesis", "b8").state.update(
            architecture=chain),
        "string_block_resolutions": lambda g: sub(g, "synthesis").state.update(
            block_resolutions=["4", "8"]),
        "huge_z_dim": lambda g: g.state.update(z_dim=10 ** 30),
        "parameter_not_a_tensor": lambda g: sub(g, "mapping", "fc0").state["_parameters"]
        .update(weight="w"),
        "missing_weight": lambda g: sub(g, "mapping", "fc0").state["_parameters"].pop("weight"),
    }
    out = {name: variant(name, edit) for name, edit in cases.items()}
    # PersistentObj itself refuses these metas, so the mapping network is written raw.
    for name, bad in [("list_state", {"state": [1, 2]}), ("class_name_not_str",
                                                         {"class_name": chain})]:
        meta = {"type": "class", "version": 1, "module_src": "", "state": {},
                "class_name": "MappingNetwork", **bad}
        out[name] = variant(name, lambda g, meta=meta: g.state["_modules"].update(
            mapping=_Persistent(fn, meta)))
    return out


# HDF5 ---------------------------------------------------------------------------------------

def _keras_skeleton(f, dataset_name="kernel:0"):
    f.attrs["layer_names"] = np.asarray([b"dense"])
    grp = f.create_group("dense")
    grp.attrs["weight_names"] = np.asarray([f"dense/{dataset_name}".encode()])
    return grp.create_group("dense")


def h5_cases(tmp: Path) -> dict[str, str]:
    secret = tmp / "secret.bin"
    secret.write_bytes(np.arange(256, dtype=np.float32).tobytes())
    other = tmp / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(16, dtype=np.float32)
    out = {}

    def make(name, fill):
        path = tmp / f"{name}.h5"
        with h5py.File(path, "w") as f:
            fill(f, _keras_skeleton(f))
        out[name] = str(path)

    make("declared_54_gib", lambda f, g: g.create_dataset("kernel:0", (54 << 28,), "f4"))
    make("declared_chunked", lambda f, g: g.create_dataset(
        "kernel:0", (54 << 28,), "f4", chunks=(1 << 16,), compression="gzip"))
    make("external_storage", lambda f, g: g.create_dataset(
        "kernel:0", (256,), "f4", external=[(str(secret), 0, 1024)]))
    make("external_link", lambda f, g: g.__setitem__(
        "kernel:0", h5py.ExternalLink(str(other), "/data")))
    make("soft_link_loop", lambda f, g: (g.__setitem__("kernel:0", h5py.SoftLink("/x/a")),
                                         f.create_group("x"),
                                         f["x"].__setitem__("a", h5py.SoftLink("/x/b")),
                                         f["x"].__setitem__("b", h5py.SoftLink("/x/a"))))
    make("soft_link_self", lambda f, g: g.__setitem__(
        "kernel:0", h5py.SoftLink("/dense/dense/kernel:0")))
    make("group_link_loop", lambda f, g: (f.__setitem__("model_weights", h5py.SoftLink("/m")),
                                          f.__setitem__("m", h5py.SoftLink("/model_weights"))))

    def virtual(f, g):
        layout = h5py.VirtualLayout(shape=(16,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(16,))
        g.create_virtual_dataset("kernel:0", layout)

    make("virtual_dataset", virtual)
    make("string_dataset", lambda f, g: g.create_dataset("kernel:0", data=np.asarray([b"x"])))
    return out


def deepface_h5(tmp: Path) -> str:
    rng = np.random.default_rng(7)
    return write_keras_h5(tmp / "race.h5", keras_layers(random_backbone(rng), random_head(rng, 6)))


# Running the worker -------------------------------------------------------------------------

def run_worker(job: dict) -> dict:
    job = {"mem_cap": MEM_CAP, "case_timeout": CASE_TIMEOUT,
           "golden": {"pkl": GOLDEN_PKL, "pt": GOLDEN_PT}, **job}
    r = subprocess.run([sys.executable, WORKER], input=json.dumps(job), capture_output=True,
                       text=True, timeout=300, cwd=REPO, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]  # a crash, or the watchdog killed a hang
    assert "Traceback" not in r.stderr and "HDF5-DIAG" not in r.stderr, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_refused(report: dict, cases: dict[str, str], klass: str) -> None:
    results = {r["name"]: r for r in report["results"]}
    assert set(results) == set(cases)
    for name, r in results.items():
        assert r["outcome"] == "refused", (name, r)
        assert "\n" not in r["message"] and 0 < len(r["message"]) < 700, (name, r)
        assert r["golden_intact"], (name, "golden file reads differently afterwards")
        assert r["seconds"] < CASE_TIMEOUT
    worst = max(results.values(), key=lambda r: r["seconds"])
    fattest = max(results.values(), key=lambda r: r["rss_growth"])
    MEASURED[klass] = {
        "n": len(results), "max_seconds": worst["seconds"], "slowest": worst["name"],
        "max_rss_growth_mib": fattest["rss_growth"] / 2**20, "fattest": fattest["name"],
        "max_peak_rss_mib": max(r["peak_rss"] for r in results.values()) / 2**20}
    # Every refusal is cheap: nothing was allocated for the bombs.
    assert fattest["rss_growth"] < 256 << 20, fattest


@pytest.mark.parametrize("klass", ["tensor", "bomb", "persistent_id"])
def test_hostile_torch_files_are_refused(tmp_path, klass):
    build = {"tensor": tensor_cases, "bomb": bomb_cases, "persistent_id": persistent_id_cases}
    cases = build[klass](tmp_path)
    check_refused(run_worker({"cases": list(cases.items())}), cases, klass)


def test_poisoning_builds_are_refused_and_golden_loads_exactly(tmp_path):
    """After every refused BUILD the golden files read bit-identically, and at the end the
    golden classifier still reproduces the reference logits (the reported attack left them
    off by 1e27 and NaN)."""
    cases = poison_cases(tmp_path)
    report = run_worker({"cases": list(cases.items()),
                         "reference": {"pt": GOLDEN_PT,
                                       "npz": os.path.join(GOLDEN, "resnet34_w16_reference.npz")}})
    check_refused(report, cases, "poison")
    assert report["reference_rel_err"] <= 1e-4


def test_malformed_nvidia_pickles_are_refused(tmp_path, monkeypatch):
    cases = nvidia_cases(tmp_path, monkeypatch)
    check_refused(run_worker({"cases": list(cases.items())}), cases, "nvidia")


def test_hostile_h5_files_are_refused(tmp_path):
    cases = h5_cases(tmp_path)
    golden_h5 = deepface_h5(tmp_path)
    report = run_worker({"cases": list(cases.items()),
                         "golden": {"pkl": GOLDEN_PKL, "pt": GOLDEN_PT, "h5": golden_h5}})
    check_refused(report, cases, "h5")
    messages = {r["name"]: r["message"] for r in report["results"]}
    assert "external files" in messages["external_storage"]
    assert "external link" in messages["external_link"]
    assert "loop" in messages["soft_link_loop"] and "loop" in messages["group_link_loop"]
    assert "declares" in messages["declared_54_gib"]


@pytest.mark.parametrize("source,count,seed", [("pkl", 40, 1), ("pt", 40, 2), ("h5", 20, 3)])
def test_seeded_mutations_of_golden_files(tmp_path, source, count, seed):
    """Byte flips, truncations, splices and zeroed ranges: each mutant either still reads or
    is refused with one CheckpointError; never another exception, a crash or a hang."""
    path = {"pkl": GOLDEN_PKL, "pt": GOLDEN_PT}.get(source) or deepface_h5(tmp_path)
    golden = {"pkl": GOLDEN_PKL, "pt": GOLDEN_PT}
    if source == "h5":
        golden["h5"] = path
    work = tmp_path / "mutants"
    work.mkdir()
    report = run_worker({"mutate": {"source": path, "seed": seed, "count": count,
                                    "dir": str(work)}, "golden": golden})
    results = report["results"]
    assert len(results) == count
    for r in results:
        assert r["outcome"] in ("ok", "refused"), r
        assert "\n" not in r["message"] and len(r["message"]) < 700, r
        assert r["golden_intact"], r
    refused = sum(r["outcome"] == "refused" for r in results)
    assert refused >= count // 4  # the mutations do reach the structure
    MEASURED[f"mutations_{source}"] = {
        "n": count, "refused": refused, "max_seconds": max(r["seconds"] for r in results),
        "max_rss_growth_mib": max(r["rss_growth"] for r in results) / 2**20}


# The real entry point and the library API ---------------------------------------------------

def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEM_CAP, MEM_CAP))


def test_cli_one_line_exit_2_nothing_written(tmp_path):
    """python -m jaxfair.convert on representative hostile files, run side by side."""
    srcs = {"tensor": tensor_cases(tmp_path)["negative_stride"],
            "bomb": bomb_cases(tmp_path)["memo_index_9_bytes"],
            "h5": h5_cases(tmp_path)["external_link"]}
    before = set(os.listdir(tmp_path))
    procs = {k: subprocess.Popen(
        [sys.executable, "-m", "jaxfair.convert", f"--src={src}",
         f"--out={tmp_path / ('out_' + k)}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_cap_memory, cwd=REPO, env=ENV) for k, src in srcs.items()}
    for k, p in procs.items():
        _, err = p.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert p.returncode == 2, (k, err)
        assert len(lines) == 1 and lines[0].startswith("jaxfair.convert: error: "), (k, err)
        assert srcs[k] in lines[0] and "Traceback" not in err
    assert set(os.listdir(tmp_path)) == before  # no output dir, no temporary dir


def test_library_raises_checkpoint_error(tmp_path, monkeypatch):
    """load_generator / load_classifier raise the same one-line error type, naming the file."""
    bad = nvidia_cases(tmp_path, monkeypatch)["string_bias_gain"]
    with pytest.raises(CheckpointError, match="bias_gain") as e:
        jaxfair.load_generator(bad)
    assert isinstance(e.value, JaxfairError) and isinstance(e.value, ValueError)
    assert bad in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="nested|depth") as e:
        jaxfair.load_classifier(bomb_cases(tmp_path)["tuple_nesting"])


def test_describe_never_prints_untrusted_structures():
    chain = pickle.loads(b"\x80\x04" + tuple_chain(64) + b".")  # repr would take 2**64 steps
    assert torch_pickle.describe(chain) == "<tuple>"
    assert torch_pickle.describe("x" * 1000).endswith("...")
    assert torch_pickle.describe(10 ** 400) == "<int of 1329 bits>"
    assert torch_pickle.describe_error(KeyError(chain)) == "KeyError: <tuple>"
    assert str(CheckpointError("a\nb" + "c" * 5000)).startswith("a b")
    assert len(str(CheckpointError("c" * 5000))) < 700


def test_zz_report_measurements(capsys):
    """Prints the worst time and memory per class (docs/security.md quotes these)."""
    if not MEASURED:
        pytest.skip("no hostile class ran in this session")
    with capsys.disabled():
        for klass, m in MEASURED.items():
            print(f"\n[hostile] {klass}: {json.dumps(m)}")


def test_each_load_has_fresh_stand_ins():
    """Second line of defence behind the scanner's BUILD rule: even a stand-in modified
    during one load is not the one the next load uses."""
    a, b = torch_pickle._Load(10), torch_pickle._Load(10)
    key = ("torch", "FloatStorage")
    assert a.globals[key] is not b.globals[key]
    assert a.globals[("dnnlib.util", "EasyDict")] is not b.globals[("dnnlib.util", "EasyDict")]
    a.globals[key].dtype = np.dtype("f8")
    assert b.globals[key].dtype == np.float32
    assert torch_pickle._Load(10).globals[key].dtype == np.float32


def test_worker_reads_this_checkout():
    r = subprocess.run([sys.executable, "-c", "import jaxfair; print(jaxfair.__file__)"],
                       capture_output=True, text=True, cwd=os.path.dirname(WORKER), env=ENV)
    assert r.stdout.strip() == os.path.join(REPO, "jaxfair", "__init__.py")
