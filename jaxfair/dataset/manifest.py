"""The run's header (plan.json), cross-unit near-duplicates, manifest.json, ImageFolder view.

``plan.json`` is written when a run starts and fingerprints it (config, checkpoint hashes,
groups, quotas): a rerun on the same directory must match it, else it is refused. After all
units are done, process 0 removes near-duplicate identities across units (deterministic:
units in id order, an identity closer than ``identity_radius`` to a kept identity of its
group from an earlier unit is excluded), tops groups up with new units if that left them
short, and writes ``manifest.json`` (counts per group, the excluded record ids).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from jaxfair import identity
from jaxfair.dataset.format import (
    DONE,
    IMAGEFOLDER,
    LATENTS,
    LOCK,
    MANIFEST,
    PLAN,
    PLANNER_STATE,
    RECORDS,
    SHARDS,
    shard_dir,
    slug,
)
from jaxfair.errors import JaxfairError
from jaxfair.io import atomic

# Settings that change how a run executes but not what it writes.
EXECUTION_KEYS = ("workdir", "writer_threads", "imagefolder", "memory_budget_gb")


class PlanMismatch(JaxfairError, ValueError):
    """The directory holds a dataset made with other settings or checkpoints."""


def write_json(path: str, obj: dict) -> None:
    """Writes JSON atomically (``io.atomic.file``)."""
    with atomic.file(path) as f:
        json.dump(obj, f, indent=1, sort_keys=True)


# Budgets: a larger one finishes what a smaller one left short and never changes a finished
# unit (the planner resumes its rounds; a search unit takes a prefix of its archive).
BUDGET_KEYS = (("planner", "max_evaluations_per_identity"), ("search", "max_generations"),
               ("distribution", "max_draw_factor"))


def fingerprint_config(config: dict) -> dict:
    """The settings that decide what a run writes (execution and budget keys left out)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()
           if k not in EXECUTION_KEYS}
    for section, key in BUDGET_KEYS:
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out


def first_difference(a, b, prefix="") -> str | None:
    """The first differing key path of two JSON-like values, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{prefix}{k}"
            d = first_difference(a[k], b[k], f"{prefix}{k}.")
            if d:
                return d
        return None
    return None if a == b else f"{prefix.rstrip('.')}: {a!r} -> {b!r}"


def prepare(workdir: str, header: dict, overwrite: bool) -> None:
    """Creates ``workdir`` with ``plan.json``, or checks that an existing one matches.

    Raises:
      PlanMismatch: the directory's plan differs and ``overwrite`` is False.
      OSError: the directory cannot be created or written.
    """
    path = os.path.join(workdir, PLAN)
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                old = json.loads(f.read())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            if not overwrite:
                raise PlanMismatch(f"{path}: unreadable ({e}); rerun with --overwrite to "
                                   f"replace the dataset, or choose another --workdir") from None
            old = {}
        diff = first_difference({k: v for k, v in old.items() if k != "jaxfair_version"},
                                {k: v for k, v in header.items() if k != "jaxfair_version"})
        if diff is None:
            return
        if not overwrite:
            raise PlanMismatch(f"{workdir} holds a dataset made with other settings or "
                               f"checkpoints ({diff}); rerun with --overwrite to replace it, or "
                               f"choose another --workdir")
        for name in (SHARDS, IMAGEFOLDER, MANIFEST, PLAN, "report", PLANNER_STATE):
            p = os.path.join(workdir, name)
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.remove(p)
    elif os.path.isdir(workdir) and set(os.listdir(workdir)) - {LOCK} and not overwrite:
        raise PlanMismatch(f"{workdir} exists, is not empty and holds no jaxfair dataset "
                           f"({PLAN} missing); choose another --workdir")
    os.makedirs(workdir, exist_ok=True)
    write_json(path, header)


def read_unit(workdir: str, unit_id: int) -> tuple[list[dict], np.ndarray]:
    """(records, latents [n, ...]) of a finished shard."""
    d = shard_dir(workdir, unit_id)
    with open(os.path.join(d, RECORDS)) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return records, np.load(os.path.join(d, LATENTS))


def exclude_near_duplicates(workdir: str, units, radius: float, w_std: float
                            ) -> tuple[set[str], dict[int, int]]:
    """Cross-unit near-duplicate identities of the given (finished) units.

    Args:
      units: plan units in id order.
      radius: the identity radius (``jaxfair.identity``: rms distance in W, units of the
        prior's w_std) at or below which two identities are the same face (0: only exact
        copies).

    Returns:
      (excluded identity ids, kept identities per group index).
    """
    kept: dict[int, list[np.ndarray]] = {}
    excluded: set[str] = set()
    for unit in units:
        records, latents = read_unit(workdir, unit.id)
        lat = identity.to_prior_units(latents, 0.0, w_std)  # differences: w_avg cancels
        prev = np.concatenate(kept[unit.group]) if kept.get(unit.group) else None
        new = []
        for r in records:
            if r["variation"] != 0:
                continue
            x = lat[r["latent_row"]]
            if prev is not None and np.min(identity.distance(prev, x)) <= radius:
                excluded.add(r["identity"])
            else:
                new.append(x)
        kept.setdefault(unit.group, []).append(np.reshape(new, (len(new), lat.shape[1])))
    return excluded, {g: sum(len(a) for a in v) for g, v in kept.items()}


def summarise(workdir: str, header: dict, plan, excluded: set[str],
              dataset_evaluations: dict[str, int] | None = None) -> dict:
    """The manifest: the header plus counts per group and the excluded record ids.

    ``evaluations`` counts every generator + classifier evaluation of the job: ``find``
    (search candidates of the units, or the planner's ``stream`` and ``gated``, given as
    ``dataset_evaluations``), ``render`` (identities rendered again at full resolution) and
    ``variations`` (variation candidates); ``candidates_evaluated`` is their sum.
    """
    counts = {g: {"quota": plan.quota, "identities": 0, "images": 0} for g in plan.groups}
    excluded_records, stats = [], {}
    for unit in plan.units:
        records, _ = read_unit(workdir, unit.id)
        with open(os.path.join(shard_dir(workdir, unit.id), DONE)) as f:
            for k, v in json.load(f).items():
                if k not in ("unit", "records", "files"):  # files: verify.py's checksums
                    stats[k] = stats.get(k, 0) + v
        for r in records:
            if r["identity"] in excluded:
                excluded_records.append(r["id"])
                continue
            c = counts[r["group"]]
            c["images"] += 1
            c["identities"] += r["variation"] == 0
    evaluations = {"find": stats.get("candidates", 0), **(dataset_evaluations or {}),
                   "render": stats.get("rendered", 0),
                   "variations": stats.get("variation_candidates", 0)}
    return {**header, "complete": True, "counts": counts, "units": len(plan.units),
            "images": sum(c["images"] for c in counts.values()),
            "identities": sum(c["identities"] for c in counts.values()),
            "excluded": sorted(excluded_records), "near_duplicates_removed": len(excluded),
            "variations_rejected": stats.get("variations_rejected", 0),
            "variations_missing": stats.get("variations_missing", 0),
            "evaluations": evaluations,
            "candidates_evaluated": int(sum(evaluations.values())),
            "score_disagreements": stats.get("score_disagreements", 0)}


def write_imagefolder(workdir: str, plan, excluded: set[str]) -> int:
    """``DIR/imagefolder/<group>/<identity>/<variation>.<ext>`` as hard links to the shard
    images (copies where links are not possible), rebuilt atomically; returns image count."""
    final = os.path.join(workdir, IMAGEFOLDER)
    tmp = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    n = 0
    for unit in plan.units:
        records, _ = read_unit(workdir, unit.id)
        for r in records:
            if r["identity"] in excluded or r["file"] is None:
                continue
            ext = os.path.splitext(r["file"])[1]
            d = os.path.join(tmp, slug(r["group"]), r["identity"])
            os.makedirs(d, exist_ok=True)
            src = os.path.join(shard_dir(workdir, unit.id), r["file"])
            dst = os.path.join(d, f"{r['variation']:02d}{ext}")
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            n += 1
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.makedirs(tmp, exist_ok=True)
    os.replace(tmp, final)
    return n
