r"""Throughput benchmark of the fused search: ``python -m jaxfair.benchmark``.

  python -m jaxfair.benchmark --config=configs/demo.py --out=out/benchmark.json
  python -m jaxfair.benchmark --preset=ffhq256 --config.search.num_searches=2 \
      --config.search.population_size=4 --config.search.generations_per_chunk=2

Fused engine vs the same engine one generation per call vs the original batch-1 loop, on
one model, device and population (``config.search``), interleaved; FLOP per candidate and
the matmul peak of this device (jaxfair.search.bench). ``--preset=ffhq256|ffhq1024`` uses
random-weight models of the real architectures (rows for candidates/s and FLOP only).
Prints a table and writes JSON. Bad input: one line on stderr, exit status 2.

  python -m jaxfair.benchmark --jobs=rejection,planner,search,branching

the job-level comparison instead (jaxfair.report.jobs): the same dataset by every method,
evaluations, wall time and, on the demo world, faithfulness and truth.

  python -m jaxfair.benchmark --peer=official --official_src=DIR

the generator against NVIDIA's implementation, interleaved in one process (jaxfair.peer).
"""

from __future__ import annotations

import json
import math
import os
import platform

import jax
from absl import flags

from jaxfair import cli
from jaxfair.search import bench

PROG = "jaxfair.benchmark"

_OUT = flags.DEFINE_string("out", None, "Write the results as JSON here.")
_CHUNKS = flags.DEFINE_integer("chunks", 3, "Timed steady-state chunks of the fused engine "
                               "(and as many interleaved slices of the other modes).")
_BATCH1_SECONDS = flags.DEFINE_float("batch1_seconds", 20.0,
                                     "Wall time given to the batch-1 original loop.")
_PRESET = flags.DEFINE_enum("preset", None, list(bench.PRESETS),
                            "Random-weight FFHQ generator + ResNet-34 FairFace classifier "
                            "instead of the config's checkpoints.")
_PEER = flags.DEFINE_enum(
    "peer", None, ["official"], "Generator throughput against NVIDIA's implementation instead "
    "(jaxfair.peer; needs torch and --official_src, a stylegan2-ada-pytorch checkout).")
_OFFICIAL_SRC = flags.DEFINE_string("official_src", None, "--peer: the official checkout.")
_PEER_MODELS = flags.DEFINE_list("peer_models", ["ffhq256", "ffhq1024"], "--peer: models.")
_PEER_BATCHES = flags.DEFINE_list("peer_batches", ["1", "4"], "--peer: batch sizes.")
_JOBS = flags.DEFINE_list(
    "jobs", None, "Job-level comparison instead: run the main job with each of these methods "
    "(rejection, planner, search, branching, distribution; jaxfair.report.jobs) and compare "
    "evaluations, wall time and (demo world) faithfulness and truth.")
_JOBS_DIR = flags.DEFINE_string("jobs_dir", "out/benchmark_jobs",
                                "Where --jobs writes one dataset per method.")
_TARGET = flags.DEFINE_string("target", None, "Target group (default: config.search.target; "
                              "with --preset: race=black,gender=female).")


def _device() -> str:
    return (f"{jax.devices()[0].device_kind} x{len(jax.devices())} ({platform.machine()}, "
            f"{os.cpu_count()} CPU cores)")


def _write(result: dict) -> None:
    if _OUT.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2, default=float)


def jobs_main(config) -> None:
    """``--jobs``: the same dataset by every listed method (jaxfair.report.jobs)."""
    from jaxfair.report import jobs

    for arm in _JOBS.value:
        if arm not in jobs.ARMS:
            cli.fail(PROG, f"unknown job {arm!r} in --jobs; choose from {', '.join(jobs.ARMS)}")
    demo = os.path.normpath(config.generator) == os.path.normpath("checkpoints/demo/generator")
    with cli.reporting(PROG):
        results = jobs.run(config, _JOBS.value, _JOBS_DIR.value, demo)
    print(jobs.table(results))
    _write({"device": _device(), "load_average_1min": os.getloadavg()[0],
            "threshold": config.threshold, "groups": list(config.attributes),
            "quota": config.identities_per_group, "jobs": results})


def peer_main() -> None:
    """``--peer=official``: the generator against NVIDIA's, interleaved (jaxfair.peer)."""
    from jaxfair import peer

    if not _OFFICIAL_SRC.value:
        cli.fail(PROG, "--peer=official needs --official_src (a checkout of "
                       "NVlabs/stylegan2-ada-pytorch)")
    try:
        batches = [int(b) for b in _PEER_BATCHES.value]
    except ValueError:
        cli.fail(PROG, f"--peer_batches must be integers, got {_PEER_BATCHES.value}")
    for name in _PEER_MODELS.value:
        if name not in peer.PRESETS:
            cli.fail(PROG, f"unknown --peer_models entry {name!r}; choose from "
                           f"{', '.join(peer.PRESETS)}")
    rows = [r for name in _PEER_MODELS.value
            for r in peer.compare(name, batches, _OFFICIAL_SRC.value)]
    print(peer.table(rows))
    _write({"device": _device(), "load_average_1min": os.getloadavg()[0], "rows": rows,
            "best": peer.best_batches(rows)})


def main(config):
    # Before anything loads: chunks divide the batch-1 time and average every row.
    if _CHUNKS.value < 1:
        cli.fail("jaxfair.benchmark", f"--chunks must be >= 1, got {_CHUNKS.value}")
    if not (math.isfinite(_BATCH1_SECONDS.value) and _BATCH1_SECONDS.value > 0):
        cli.fail("jaxfair.benchmark", f"--batch1_seconds must be > 0, got "
                                      f"{_BATCH1_SECONDS.value}")
    if _PEER.value:
        return peer_main()
    if _JOBS.value:
        return jobs_main(config)
    with cli.reporting(PROG):
        result = bench.measure(config, _CHUNKS.value, _BATCH1_SECONDS.value, _PRESET.value,
                               _TARGET.value)
    print("\n".join(bench.summary_lines(result)))
    if _OUT.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    cli.run(main, PROG, default_config="configs/demo.py")
