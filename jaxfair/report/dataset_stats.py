"""Figures of a dataset computed from its records and vectors (no models, no files).

Used by jaxfair.report.dataset_report; each function takes records grouped by group (dicts
as in records.jsonl) and returns JSON-ready numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxfair.dataset.reader import Dataset
from jaxfair.report import diversity, stats


def by_group(ds: Dataset, records: list[dict]) -> dict[str, list[dict]]:
    """Records per group: planned groups first (plan order), then any unplanned ones."""
    out: dict[str, list[dict]] = {g: [] for g in ds.groups}
    for r in records:
        out.setdefault(r["group"], []).append(r)
    return out


def counts(ds: Dataset, groups: Mapping[str, list[dict]]) -> dict:
    """Per group: quota, identities and images found in the records, and the manifest's."""
    mc = (ds.manifest or {}).get("counts", {})
    out = {}
    for g, recs in groups.items():
        row = {"quota": ds.groups.get(g), "identities": len({r["identity"] for r in recs}),
               "images": len(recs), "planned": g in ds.groups}
        if ds.manifest is not None:
            m = mc.get(g)
            row["manifest"] = m
            row["matches_manifest"] = bool(m and m.get("identities") == row["identities"]
                                           and m.get("images") == row["images"])
        out[g] = row
    return out


def sample_identities(groups: Mapping[str, list[dict]], k: int, seed: int
                      ) -> dict[str, list[dict]]:
    """Up to k identity images (variation 0) per group, a seeded subset in record order."""
    rng = np.random.default_rng(seed)
    out = {}
    for g, recs in groups.items():
        own = [r for r in recs if r["variation"] == 0]
        idx = np.sort(rng.choice(len(own), min(k, len(own)), replace=False))
        out[g] = [own[i] for i in idx]
    return out


def target_probs(ds: Dataset, groups: Mapping[str, list[dict]]) -> dict:
    """Per target attribute and group: quantiles of the stored target-class probability."""
    out: dict[str, dict] = {}
    for attr in ds.plan["attributes"]:
        out[attr] = {}
        for g, recs in groups.items():
            p = np.array([r["target_probs"][attr] for r in recs if attr in r["target_probs"]])
            if p.size:
                out[attr][g] = {"n": int(p.size), "min": float(p.min()),
                                "q05": float(np.quantile(p, 0.05)),
                                "median": float(np.median(p)), "mean": float(p.mean())}
    return out


def non_target(ds: Dataset, groups: Mapping[str, list[dict]]) -> dict:
    """How identities of each group split over every attribute the group leaves free.

    Returns:
      {attr: {group: {class: proportion}}} with an 'all groups' row per attribute, over
      identities (variation 0); an attribute appears for the groups with identities that do
      not constrain it.
    """
    out: dict[str, dict] = {}
    for a in ds.schema.attributes:
        rows, pooled = {}, []
        for g, recs in groups.items():
            if not np.all(np.asarray(ds.target(g).masks[a.name])):
                continue  # the group fixes this attribute
            labels = np.array([a.classes.index(r["attributes"][a.name]["class"])
                               for r in recs if r["variation"] == 0], np.int64)
            if not labels.size:
                continue  # no identity yet (partial dataset)
            rows[g] = stats.proportions(labels, a.classes)
            pooled.append(labels)
        if rows:
            rows["all groups"] = stats.proportions(np.concatenate(pooled), a.classes)
            out[a.name] = rows
    return out


def diversity_section(spaces: Mapping[str, tuple[str, Mapping[str, np.ndarray]]],
                      fraction: float, cap: int, seed: int
                      ) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Diversity per group in every space.

    Args:
      spaces: {space name: (metric, {group: vectors [n, ...]})}.
      fraction: near-duplicate radius as a fraction of the reference distance: the mean
        distance between two identities of the same group, over all groups' pairs
        (scale-free, so one setting serves every space and generator; within groups, since
        features that encode the group's own attributes separate groups by construction).
      cap: at most this many vectors per group (a seeded subset).

    Returns:
      ({space: {'metric', 'within_group_mean_pairwise', 'radius', 'groups': {g: summary}}},
       {space: {group: nearest-neighbour distances [n]}}) for the plots.
    """
    rng = np.random.default_rng(seed)

    def subset(x):
        return x if len(x) <= cap else x[np.sort(rng.choice(len(x), cap, replace=False))]

    out, nn = {}, {}
    for space, (metric, vecs) in spaces.items():
        vecs = {g: v.reshape(len(v), -1) for g, v in vecs.items() if len(v)}
        if not vecs:
            continue
        dists = {g: diversity.pairwise(subset(v), metric) for g, v in vecs.items()}
        within = np.concatenate([d[np.triu_indices(len(d), 1)] for d in dists.values()])
        ref = float(within.mean()) if within.size else float("nan")
        radius = fraction * ref if np.isfinite(ref) else 0.0
        groups, nn[space] = {}, {}
        for g, d in dists.items():
            groups[g] = diversity.summary(d, radius)
            if len(d) > 1:
                nn[space][g] = diversity.nearest_neighbour(d)
        out[space] = {"metric": metric, "within_group_mean_pairwise": ref, "radius": radius,
                      "groups": groups}
    return out, nn
