"""Faithfulness without ground truth: each group against an unguided sample of the same group.

For any generator: draw prior samples with the prior stream's render-and-judge step
(``jaxfair.judge.render.make_step``; batch b from ``keys.reference(root(report.seed), b)``,
the dataset's truncation and noise mode), put each into the first of the dataset's groups
whose test it passes by the dataset's own acceptance rule (``config.threshold`` and
``config.search.accept_mode`` as plan.json records them), and keep the first ones per group:
a classifier-labelled binned rejection sample, i.e. the generator's own faces of the group.
The dataset's identities of the group (variation 0, a seeded subset of equal size) are then
compared with it (``jaxfair.report.two_sample``) in

  latent space   z on its sphere where the dataset kept z (z.npy), else the stored latents
                 (W, or W+ rows; the reference's ws): the identity distance;
  feature space  the classifier's penultimate features of the full-resolution float32
                 render of each latent (both sides rendered by ``render.make_features``'s
                 judge, so files and their encoding play no part): cosine distance.

Cost: every prior sample drawn is one generator + classifier evaluation (reported). At
most ``report.reference_budget`` samples are drawn; a group the budget leaves short is
compared at the size reached (both sides), or not at all below ``MIN_SIZE``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair import keys as keylib
from jaxfair.dataset.reader import Dataset
from jaxfair.judge import attributes, render
from jaxfair.judge.classifier import Classifier
from jaxfair.models import stylegan2 as sg
from jaxfair.models import stylegan2_ops as ops
from jaxfair.report import two_sample
from jaxfair.sampling import stream
from jaxfair.search import objective as obj

MIN_SIZE = 3  # fewer identities (or reference faces) than this: not compared


@dataclasses.dataclass
class Sample:
    """The reference: per group z [m, z_dim], ws [m, num_ws, w_dim], features [m, F]."""

    z: dict[str, np.ndarray]
    ws: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    evaluations: int
    seconds: float


def acceptance(plan: Mapping) -> tuple[obj.Objective, float, str]:
    """(acceptance rule, truncation psi, noise mode) recorded in a dataset's plan.json.

    Raises:
      KeyError: plan.json records no ``config.threshold`` (the rule is unknown).
    """
    cfg = plan.get("config") or {}
    if "threshold" not in cfg:
        raise KeyError("plan.json records no config.threshold (the dataset's acceptance rule)")
    mode = (cfg.get("search") or {}).get("accept_mode", "threshold")
    return (obj.Objective(threshold=float(cfg["threshold"]), mode=mode),
            float(cfg.get("truncation_psi", 1.0)), cfg.get("noise_mode", "const"))


def draw(G: sg.Generator, C: Classifier, objective: obj.Objective, groups: list[str],
         need: Mapping[str, int], budget: int, batch_size: int, psi: float, noise_mode: str,
         seed: int) -> Sample:
    """Binned rejection sample: up to ``need[g]`` faces of every group g, at most ``budget``
    prior samples (whole batches of ``batch_size``; at least one batch).

    A sample joins the first group of ``groups`` that accepts it (``sampling.stream.assign``;
    disjoint groups for a threshold above 0.5 or the argmax rule).
    """
    step = render.make_step(G, C, batch_size, psi, noise_mode, features=True)
    targets = attributes.stack_targets([attributes.parse_target(g, C.schema) for g in groups])

    @jax.jit
    def judged(g_state, c_state, key):
        z, ws, _, probs, _, feats = step(g_state, c_state, key, targets)
        ok = jax.vmap(lambda t: obj.accepted(objective, probs, t))(targets)
        return z, ws, feats, stream.assign(ok)

    root = keylib.root(seed)
    kept = {g: [] for g in groups}
    evaluations, start = 0, time.perf_counter()
    for b in range(max(1, budget // batch_size)):
        if all(len(kept[g]) >= need.get(g, 0) for g in groups):
            break
        z, ws, feats, grp = jax.device_get(judged(G.state, C.state, keylib.reference(root, b)))
        evaluations += batch_size
        for i, g in enumerate(groups):
            rows = np.flatnonzero(grp == i)[:max(0, need.get(g, 0) - len(kept[g]))]
            kept[g].extend((z[r], ws[r], feats[r]) for r in rows)
    stack = {k: {g: np.array([row[k] for row in v]) for g, v in kept.items()} for k in range(3)}
    return Sample(stack[0], stack[1], stack[2], evaluations,
                  round(time.perf_counter() - start, 2))


def _has_z(ds: Dataset, records: list[dict]) -> bool:
    units = {r["unit"] for r in records}
    return all(os.path.exists(os.path.join(s.path, "z.npy")) for s in ds.shards
               if s.unit in units)


def _sphere(z: np.ndarray) -> np.ndarray:
    """z on its sphere of radius sqrt(z_dim) (the mapping network's first operation)."""
    return np.asarray(ops.normalize_2nd_moment(jnp.asarray(z, jnp.float32)), np.float64)


def _ws(G: sg.Generator, lat: np.ndarray) -> np.ndarray:
    """Stored latents (W [N, w_dim] or W+ [N, num_ws, w_dim]) -> ws for synthesis."""
    if lat.ndim == 2:
        lat = np.broadcast_to(lat[:, None], (len(lat), G.config.num_ws, lat.shape[-1]))
    return np.ascontiguousarray(lat)


def check(ds: Dataset, own: Mapping[str, list[dict]], G: sg.Generator, C: Classifier, rc,
          log: Callable[[str], None] = print) -> dict:
    """The section: every planned group with identities against its reference sample.

    Args:
      own: {group: identity records (variation 0)}.
      rc: ``config.report``: reference_size (0: no check), reference_budget,
        reference_permutations, batch_size, seed.

    Returns:
      {'skipped': reason} or {'rule', 'evaluations', 'seconds', 'budget', 'groups': {g:
      {'identities', 'reference', 'compared', 'latent_space', 'latent': two_sample result,
      'features': two_sample result}}} ('latent'/'features' absent when not compared).
    """
    if rc.reference_size == 0:
        return {"skipped": "report.reference_size is 0"}
    try:
        objective, psi, noise_mode = acceptance(ds.plan)
    except KeyError as e:
        return {"skipped": str(e.args[0])}
    groups = [g for g in ds.groups if len(own.get(g, ())) >= MIN_SIZE]
    if not groups:
        return {"skipped": f"no group has {MIN_SIZE} identities yet"}
    need = {g: min(len(own[g]), rc.reference_size) for g in groups}
    log(f"drawing an unguided reference of up to {sum(need.values())} faces "
        f"(budget {rc.reference_budget} evaluations)")
    ref = draw(G, C, objective, list(ds.groups), need, rc.reference_budget, rc.batch_size,
               psi, noise_mode, rc.seed)
    features = render.make_features(G, C, noise_mode)
    rng = np.random.default_rng(rc.seed)
    out = {"rule": {"threshold": objective.threshold, "mode": objective.mode,
                    "truncation_psi": psi, "noise_mode": noise_mode},
           "evaluations": ref.evaluations, "seconds": ref.seconds,
           "budget": rc.reference_budget, "groups": {}}
    for g in groups:
        m = min(need[g], len(ref.z[g]))
        row = out["groups"][g] = {"identities": len(own[g]), "reference": len(ref.z[g]),
                                  "compared": m if m >= MIN_SIZE else 0}
        if m < MIN_SIZE:
            continue
        pick = [own[g][i] for i in np.sort(rng.choice(len(own[g]), m, replace=False))]
        lat = ds.latents(pick)
        if _has_z(ds, pick):
            row["latent_space"] = "z"
            x, y = _sphere(ds.z(pick)), _sphere(ref.z[g][:m])
        else:
            row["latent_space"] = ds.plan["latent_space"]
            y = ref.ws[g][:m] if lat.ndim == 3 else ref.ws[g][:m, 0]
            x = lat
        row["latent"] = two_sample.compare(x, y, "rms", rc.reference_permutations, rc.seed)
        fx = render.batched(lambda ws: features(G.state, C.state, ws)[1], _ws(G, lat),
                            rc.batch_size)
        row["features"] = two_sample.compare(fx, ref.features[g][:m], "cosine",
                                             rc.reference_permutations, rc.seed)
    return out
