"""Job-level comparison: the same dataset made by every method, measured the same way.

Each arm runs the main job (``pipeline.run``) on one config and threshold with one method
setting, in its own directory, one after the other on the same machine; the manifest gives
its evaluations (every generator + classifier evaluation: find, re-render, variations) and
the run its wall time. Per group: identities, the evaluations the group's own work took
where a method has per-group work (a search unit, a group's gated proposals; the shared stream is
the dataset's, reported once), and, on the demo world, the KS ratio of its free factors
(``faithfulness``) and its ground-truth rate. Arms:

  rejection     binned rejection sampling: the planner without gates (the baseline)
  planner       the planner (shared stream + gated sampling of the rare groups)
  search        the fused evolutionary search (``config.search.strategy``)
  branching     the original method (youneednodataset's branching search)
  distribution  verified draws from the fitted per-group mixtures (needs ``sample fit``;
                its fit cost is not in the job and is reported apart, from the fit's meta)
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable

import ml_collections
import numpy as np

from jaxfair.dataset.reader import Dataset
from jaxfair.report import faithfulness as faith

ARMS = {
    "rejection": {"method": "planner", "planner.guided_batch": 0},
    "planner": {"method": "planner"},
    "search": {"method": "search"},
    "branching": {"method": "search", "search.strategy": "branching"},
    "distribution": {"method": "distribution"},
}


def arm_config(config: ml_collections.ConfigDict, arm: str) -> ml_collections.ConfigDict:
    """``config`` with the arm's method settings."""
    if arm not in ARMS:
        raise ValueError(f"unknown job arm {arm!r}; choose from {', '.join(ARMS)}")
    c = ml_collections.ConfigDict(config.to_dict())
    for path, value in ARMS[arm].items():
        node = c
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def _per_group_work(workdir: str, groups: list[str]) -> dict[str, int]:
    """Evaluations of each group's own work: search units' candidates, the planner's gated
    proposals."""
    out = dict.fromkeys(groups, 0)
    shards = os.path.join(workdir, "shards")
    for name in sorted(os.listdir(shards)):
        done = os.path.join(shards, name, "DONE")
        if not os.path.exists(done):
            continue
        with open(done) as f:
            stats = json.load(f)
        with open(os.path.join(shards, name, "records.jsonl")) as f:
            first = json.loads(f.readline())
        out[first["group"]] += stats.get("candidates", 0)
    state = os.path.join(workdir, "planner.npz")
    if os.path.exists(state):
        with open(os.path.join(workdir, "plan.json")) as f:
            plan = json.load(f)
        # The planner's group order: every combination of the attributes' classes.
        order = [",".join(f"{a}={c}" for a, c in zip(plan["attributes"], combo))
                 for combo in itertools.product(*(plan["schema"][a]
                                                  for a in plan["attributes"]))]
        with np.load(state) as s:
            for g, n in zip(order, s["gated_proposed"]):
                out[g] += int(n)
    return out


def measure(workdir: str, demo: bool) -> dict:
    """Per-group identities, work, and (demo world, z datasets) KS ratio and truth."""
    ds = Dataset.open(workdir)
    m = ds.manifest
    groups = list(m["counts"])
    work = _per_group_work(workdir, groups)
    rows = {}
    records = [r for r in ds.records() if r["variation"] == 0]
    has_z = any(os.path.exists(os.path.join(workdir, "shards", d, "z.npy"))
                for d in os.listdir(os.path.join(workdir, "shards")))
    for g in groups:
        mine = [r for r in records if r["group"] == g]
        row = {"identities": len(mine), "work": work[g]}
        if demo and has_z and mine:
            f = faith.demo_group(ds, g, mine)
            row["ks_ratio"], row["truth"] = round(f["ks_ratio"], 3), round(f["truth"], 4)
        rows[g] = row
    return {"evaluations": m["evaluations"], "total": m["candidates_evaluated"],
            "groups": rows}


def run(config: ml_collections.ConfigDict, arms: list[str], root: str, demo: bool,
        log: Callable[[str], None] = print) -> dict:
    """Runs every arm into ``root/<arm>`` and returns {arm: measurements + wall seconds}."""
    from jaxfair.pipeline import run as pipeline

    out = {}
    for arm in arms:
        cfg = arm_config(config, arm)
        workdir = os.path.join(root, arm)
        t = time.perf_counter()
        pipeline.run(cfg, workdir, overwrite=True, log=lambda m: None)
        wall = time.perf_counter() - t
        out[arm] = {**measure(workdir, demo), "wall_s": round(wall, 1)}
        log(f"{arm}: {out[arm]['total']} evaluations, {wall:.0f} s")
    base = out.get("rejection")
    for r in out.values():
        if base:
            r["vs_rejection"] = round(r["total"] / base["total"], 3)
        ks = [g["ks_ratio"] for g in r["groups"].values() if "ks_ratio" in g]
        if ks:
            r["ks_ratio_mean"], r["ks_ratio_max"] = round(float(np.mean(ks)), 3), max(ks)
            truth = [g["truth"] * g["identities"] for g in r["groups"].values()]
            r["truth"] = round(sum(truth) / sum(g["identities"]
                                                 for g in r["groups"].values()), 4)
    return out


def table(results: dict) -> str:
    """Markdown table: one row per arm."""
    lines = ["| method | evaluations | vs binned rejection | KS ratio mean / max | truth | "
             "wall s |", "|---|---|---|---|---|---|"]
    for arm, r in results.items():
        ks = (f"{r['ks_ratio_mean']:.2f} / {r['ks_ratio_max']:.2f}" if "ks_ratio_mean" in r
              else "n/a")
        truth = f"{100 * r['truth']:.1f} %" if "truth" in r else "n/a"
        lines.append(f"| {arm} | {r['total']:,} | {r.get('vs_rejection', 1.0):.2f}x | {ks} | "
                     f"{truth} | {r['wall_s']:.0f} |")
    return "\n".join(lines)
