"""Subprocess side of tests/convert/test_hostile.py: reads hostile files under caps.

Run as ``python hostile_worker.py`` with a JSON job on stdin:
  {"cases": [[name, path], ...],            # files to read with formats.read
   "mutate": [{"source": path, "seed": s, "count": n, "dir": d}, ...] (optional),
   "golden": {"pkl": path, "pt": path, "h5": path},
   "reference": {"pt": path, "npz": path} (optional), "mem_cap": bytes, "case_timeout": s}

Each case is read with the address space capped (RLIMIT_AS, soft limit, so it can be lifted
for the reference check, which needs XLA's compiler) and a watchdog that kills the process if
one case takes longer than ``case_timeout`` (faulthandler's timer thread fires even while the
main thread is stuck in C code, e.g. hashing). After every case the golden files are read
again in this same process and compared bit for bit with their first reading, so a file that
poisons the reader's shared state is caught. One JSON line on stdout reports per case:
outcome ('ok', 'refused' or 'escaped'), message, seconds and peak RSS.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import os
import resource
import sys
import time

import numpy as np

from jaxfair.convert import formats, keras_h5, torch_pickle
from jaxfair.convert import stylegan2 as sg_import
from jaxfair.convert.guard import CheckpointError


def peak_rss_reset() -> None:
    # Writing 5 to clear_refs resets VmHWM (peak RSS) to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def golden_digests(golden: dict, kinds=("pkl", "pt", "h5")) -> dict:
    out = {}
    golden = {k: v for k, v in golden.items() if k in kinds}
    if "pkl" in golden:
        top = torch_pickle.load_file(golden["pkl"])
        out["pkl"] = digest(sg_import._flat_state(top["G_ema"]))
    if "pt" in golden:
        out["pt"] = digest(dict(torch_pickle.load_file(golden["pt"])))
    if "h5" in golden:
        layers = keras_h5.read_layers(golden["h5"])
        out["h5"] = digest({f"{n}.{k}": v for n, w in layers for k, v in w.items()})
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded mutation: byte flips, a truncation, a splice or a zeroed range."""
    kind = rng.integers(4)
    n = len(data)
    # Half the time aim at the first 32 KB (pickle opcodes, zip/HDF5 headers) or the last
    # 4 KB (zip central directory), where structure lives; weights dominate elsewhere.
    def pos():
        r = rng.random()
        if r < 0.35:
            return int(rng.integers(min(n, 32768)))
        if r < 0.5:
            return int(n - 1 - rng.integers(min(n, 4096)))
        return int(rng.integers(n))

    b = bytearray(data)
    if kind == 0:
        for _ in range(int(rng.integers(1, 9))):
            b[pos()] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        b = b[:pos()]
    elif kind == 2:
        src, dst, k = pos(), pos(), int(rng.integers(1, 257))
        b[dst:dst] = b[src:src + k]
    else:
        at, k = pos(), int(rng.integers(1, 65))
        b[at:at + k] = bytes(len(b[at:at + k])) if rng.random() < 0.5 else b"\xff" * len(
            b[at:at + k])
    return bytes(b)


def run_case(path: str, cap: int, timeout: float) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    peak_rss_reset()
    base = status("VmRSS")
    faulthandler.dump_traceback_later(timeout, exit=True)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    t0 = time.perf_counter()
    try:
        formats.read(path)
        outcome, msg = "ok", ""
    except CheckpointError as e:
        outcome, msg = "refused", str(e)
    except BaseException as e:  # noqa: BLE001 (reported to the test, which fails on it)
        outcome, msg = "escaped", type(e).__name__
    seconds = time.perf_counter() - t0
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    faulthandler.cancel_dump_traceback_later()
    return {"outcome": outcome, "message": msg, "seconds": seconds,
            "peak_rss": status("VmHWM"), "rss_growth": status("VmHWM") - base}


def reference_logits(ref: dict) -> float:
    """Relative error of the golden classifier's logits against the reference outputs."""
    import jax

    import jaxfair

    golden = np.load(ref["npz"])
    C = jaxfair.load_classifier(ref["pt"])
    with jax.default_matmul_precision("highest"):
        out = np.asarray(C.logits(golden["x_nchw"].transpose(0, 2, 3, 1)))
    return float(np.abs(out - golden["logits"]).max() / np.abs(golden["logits"]).max())


def main() -> None:
    job = json.load(sys.stdin)
    cap, timeout = job["mem_cap"], job["case_timeout"]
    expected = golden_digests(job["golden"])
    results = []

    def one(name: str, path: str, kinds) -> None:
        r = run_case(path, cap, timeout)
        r["name"] = name
        got = golden_digests(job["golden"], kinds)
        r["golden_intact"] = all(got[k] == expected[k] for k in got)
        results.append(r)

    # After each file a golden file of its own format is read again (h5 files: the h5
    # golden; pickles and zips: the FairFace .pt, the file the reported poisoning corrupted);
    # after all files, every golden file.
    for name, path in job.get("cases", []):
        one(name, path, ("h5",) if name.startswith("h5/") else ("pt",))
    for m in job.get("mutate", []):
        rng = np.random.default_rng(m["seed"])
        with open(m["source"], "rb") as f:
            data = f.read()
        ext = os.path.splitext(m["source"])[1]
        for i in range(m["count"]):
            path = os.path.join(m["dir"], f"mutant{i}{ext}")
            with open(path, "wb") as f:
                f.write(mutate(data, rng))
            one(f"{ext[1:]}/mutant{i}", path, (ext[1:],))
            os.remove(path)
    import jaxfair

    report = {"results": results, "jaxfair": jaxfair.__file__,
              "golden_intact_at_end": golden_digests(job["golden"]) == expected}
    if "reference" in job:
        report["reference_rel_err"] = reference_logits(job["reference"])
    print(json.dumps(report))


if __name__ == "__main__":
    main()
