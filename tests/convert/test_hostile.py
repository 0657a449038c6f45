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
from jaxfair.convert import guard, safe_types, torch_pickle
from jaxfair.convert.guard import CheckpointError
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
        "opcode_count": write(tmp, "ops.pkl", b"\x80\x02" + b"N0" * 1_000_001 + b"N."),
        "mark_nesting": write(tmp, "marks.pkl", b"\x80\x02" + b"(" * 200_000 + b"N."),
        "tuple_nesting": write(tmp, "tuples.pkl", b"\x80\x02N" + b"\x85" * 200_000 + b"."),
        "list_nesting": write(tmp, "lists.pkl", b"\x80\x02]" + b"]" * 5000 + b"a" * 5000 + b"."),
        "object_count": write(tmp, "count.pkl", b"\x80\x02(" + b"]" * 300_000 + b"l."),
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
    if isinstance(x, safe_types.PersistentObj):
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


# Running the workers: all subprocesses start at once (imports dominate their cost) ---------

CLASSES = {"tensor": tensor_cases, "bomb": bomb_cases, "persistent_id": persistent_id_cases,
           "poison": poison_cases, "nvidia": nvidia_cases, "h5": h5_cases}
MUTATIONS = {"pkl": (40, 1), "pt": (40, 2), "h5": (20, 3)}  # source: (count, seed)
CLI_CASES = {"tensor": "negative_stride", "h5": "external_link"}


def start_worker(job: dict) -> subprocess.Popen:
    job = {"mem_cap": MEM_CAP, "case_timeout": CASE_TIMEOUT, **job}
    p = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
    p.stdin.write(json.dumps(job))
    p.stdin.close()
    return p


def finish_worker(p: subprocess.Popen) -> dict:
    out, err = p.stdout.read(), p.stderr.read()
    p.wait(timeout=600)
    assert p.returncode == 0, err[-3000:]  # a crash, or the watchdog killed a hang
    assert "Traceback" not in err and "HDF5-DIAG" not in err, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


# ``python -m jaxfair.convert`` with the address space capped first. The cap is set in the
# child itself (not with preexec_fn, which runs Python between fork and exec of a process
# whose JAX threads may hold locks); runpy.run_module(alter_sys=True) is what ``-m`` does.
CAPPED_MAIN = ("import resource, runpy; resource.setrlimit(resource.RLIMIT_AS, ({0}, {0})); "
               "runpy.run_module('jaxfair.convert', run_name='__main__', alter_sys=True)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, once):
    """Builds every hostile file, then runs the two workers and the CLI cases side by side
    (once in the session: tests/conftest.py)."""
    return once("hostile", lambda: _runs(tmp_path_factory.mktemp("hostile")))


def _runs(tmp):
    cases = {}
    with pytest.MonkeyPatch.context() as mp:
        for klass, build in CLASSES.items():
            d = tmp / klass
            d.mkdir()
            cases[klass] = build(d, mp) if klass == "nvidia" else build(d)
    golden = {"pkl": GOLDEN_PKL, "pt": GOLDEN_PT, "h5": deepface_h5(tmp)}
    (tmp / "mutants").mkdir()
    (tmp / "cli").mkdir()
    crafted = start_worker({
        "cases": [[f"{k}/{n}", p] for k, c in cases.items() for n, p in c.items()],
        "golden": golden,
        "reference": {"pt": GOLDEN_PT, "npz": os.path.join(GOLDEN, "resnet34_w16_reference.npz")}})
    mutants = start_worker({"golden": golden, "mutate": [
        {"source": golden[src], "count": n, "seed": seed, "dir": str(tmp / "mutants")}
        for src, (n, seed) in MUTATIONS.items()]})
    cli = {k: (cases[k][name], subprocess.Popen(
        [sys.executable, "-c", CAPPED_MAIN.format(MEM_CAP), f"--src={cases[k][name]}",
         f"--out={tmp / 'cli' / k}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=REPO, env=ENV)) for k, name in CLI_CASES.items()}
    cli_out = {}
    for k, (src, p) in cli.items():
        _, err = p.communicate(timeout=600)
        cli_out[k] = (src, p.returncode, err)
    return {"cases": cases, "crafted": finish_worker(crafted), "mutants": finish_worker(mutants),
            "cli": cli_out, "cli_dir": tmp / "cli"}


def results_of(report: dict, prefix: str) -> dict[str, dict]:
    return {r["name"].split("/", 1)[1]: r for r in report["results"]
            if r["name"].startswith(prefix + "/")}


@pytest.mark.parametrize("klass", list(CLASSES))
def test_hostile_files_are_refused_and_golden_files_stay_intact(runs, klass):
    """Every crafted file: one CheckpointError line, cheap, and the golden files read
    bit-identically afterwards in the same process."""
    results = results_of(runs["crafted"], klass)
    assert set(results) == set(runs["cases"][klass])
    for name, r in results.items():
        assert r["outcome"] == "refused", (name, r)
        assert "\n" not in r["message"] and 0 < len(r["message"]) < 700, (name, r)
        assert r["golden_intact"], (name, "golden file reads differently afterwards")
        assert r["seconds"] < CASE_TIMEOUT
    worst = max(results.values(), key=lambda r: r["seconds"])
    fattest = max(results.values(), key=lambda r: r["rss_growth"])
    MEASURED[klass] = {
        "n": len(results), "max_seconds": round(worst["seconds"], 3), "slowest": worst["name"],
        "max_rss_growth_mib": round(fattest["rss_growth"] / 2**20, 1),
        "fattest": fattest["name"],
        "max_peak_rss_mib": round(max(r["peak_rss"] for r in results.values()) / 2**20, 1)}
    # Nothing was allocated for the bombs.
    assert fattest["rss_growth"] < 256 << 20, fattest


def test_refusals_name_the_reason(runs):
    msg = {f"{k}/{n}": r["message"] for k in CLASSES
           for n, r in results_of(runs["crafted"], k).items()}
    assert "external files" in msg["h5/external_storage"]
    assert "external link" in msg["h5/external_link"]
    assert "loop" in msg["h5/soft_link_loop"] and "loop" in msg["h5/group_link_loop"]
    assert "declares" in msg["h5/declared_54_gib"]
    assert "memo" in msg["bomb/memo_index_9_bytes"]
    assert "zip bomb" in msg["bomb/zip_bomb_ratio"]
    assert "BUILD" in msg["poison/build_storage_type"]
    assert "bias_gain" in msg["nvidia/string_bias_gain"]
    assert "stride" in msg["tensor/negative_stride"]
    assert "opcodes" in msg["bomb/opcode_count"] or "objects" in msg["bomb/opcode_count"]


def test_golden_classifier_still_matches_reference_after_all_hostile_files(runs):
    """The reported poisoning left a later FairFace load's logits off by 1e27 and NaN."""
    assert runs["crafted"]["reference_rel_err"] <= 1e-4


def test_workers_read_this_checkout_and_golden_files_end_intact(runs):
    for report in (runs["crafted"], runs["mutants"]):
        assert report["jaxfair"] == os.path.join(REPO, "jaxfair", "__init__.py")
        assert report["golden_intact_at_end"]


@pytest.mark.parametrize("source", list(MUTATIONS))
def test_seeded_mutations_of_golden_files(runs, source):
    """Byte flips, truncations, splices and zeroed ranges: each mutant either still reads or
    is refused with one CheckpointError; never another exception, a crash or a hang."""
    results = list(results_of(runs["mutants"], source).values())
    assert len(results) == MUTATIONS[source][0]
    for r in results:
        assert r["outcome"] in ("ok", "refused"), r
        assert "\n" not in r["message"] and len(r["message"]) < 700, r
        assert r["golden_intact"], r
    refused = sum(r["outcome"] == "refused" for r in results)
    assert refused >= len(results) // 4  # the mutations do reach the structure
    MEASURED[f"mutations_{source}"] = {
        "n": len(results), "refused": refused,
        "max_seconds": round(max(r["seconds"] for r in results), 3),
        "max_rss_growth_mib": round(max(r["rss_growth"] for r in results) / 2**20, 1)}


def test_cli_one_line_exit_2_nothing_written(runs):
    """The real entry point (python -m jaxfair.convert) on representative hostile files."""
    for k, (src, code, err) in runs["cli"].items():
        lines = err.strip().splitlines()
        assert code == 2, (k, err)
        assert len(lines) == 1 and lines[0].startswith("jaxfair.convert: error: "), (k, err)
        assert src in lines[0] and "Traceback" not in err
    assert os.listdir(runs["cli_dir"]) == []  # no output dir, no temporary dir


def test_library_raises_checkpoint_error(tmp_path, monkeypatch):
    """load_generator / load_classifier raise the same one-line error type, naming the file."""
    bad = nvidia_cases(tmp_path, monkeypatch)["string_bias_gain"]
    with pytest.raises(CheckpointError, match="bias_gain") as e:
        jaxfair.load_generator(bad)
    assert isinstance(e.value, JaxfairError) and isinstance(e.value, ValueError)
    assert bad in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="nested|depth"):
        jaxfair.load_classifier(write(tmp_path, "deep.pkl", b"\x80\x02N" + b"\x85" * 1000 + b"."))


def test_describe_never_prints_untrusted_structures():
    chain = pickle.loads(b"\x80\x04" + tuple_chain(64) + b".")  # repr: 2**64 steps
    assert guard.describe(chain) == "<tuple>"
    assert guard.describe("x" * 1000).endswith("...")
    assert guard.describe(10 ** 400) == "<int of 1329 bits>"
    assert guard.describe_error(KeyError(chain)) == "KeyError: <tuple>"
    assert str(CheckpointError("a\nb" + "c" * 5000)).startswith("a b")
    assert len(str(CheckpointError("c" * 5000))) < 700


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


def test_zz_report_measurements(capsys):
    """Prints the worst time and memory per class (docs/security.md quotes these)."""
    if not MEASURED:
        pytest.skip("no hostile class ran in this session")
    with capsys.disabled():
        for klass, m in MEASURED.items():
            print(f"\n[hostile] {klass}: {json.dumps(m)}")
