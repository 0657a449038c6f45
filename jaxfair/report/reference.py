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
compared at the size reached (both sides), or not at all below ``MIN_SIZE``. Within the
report's memory budget (``sizing.Steps``) the draw renders and judges each batch of
``report.batch_size`` samples in micro-batches (the same samples), and the features of
the dataset's latents run in smaller batches.
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
from jaxfair.judge import attributes, render, sizing
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


def draw_factory(G: sg.Generator, C: Classifier, objective: obj.Objective, groups: list[str],
                 batch_size: int, psi: float, noise_mode: str):
    """``micro -> (jitted (g_state, c_state, key) -> (z, ws, features, group index [B]),
    abstract arguments)`` for ``sizing.size_step``: one batch of ``batch_size`` prior
    samples (``render.make_step``'s stream, the same samples whatever ``micro``), rendered
    and judged ``micro`` rows at a time, each put into its first accepting group (-1:
    none)."""
    targets = attributes.stack_targets([attributes.parse_target(g, C.schema) for g in groups])
    args = (sizing.abstract(G.state), sizing.abstract(C.state), jax.random.key(0))

    def factory(micro: int):
        step = render.make_step(G, C, batch_size, psi, noise_mode, micro, features=True)

        @jax.jit
        def judged(g_state, c_state, key):
            z, ws, _, probs, _, feats = step(g_state, c_state, key, targets)
            ok = jax.vmap(lambda t: obj.accepted(objective, probs, t))(targets)
            return z, ws, feats, stream.assign(ok)

        return judged, args

    return factory


def draw(G: sg.Generator, C: Classifier, objective: obj.Objective, groups: list[str],
         need: Mapping[str, int], budget: int, batch_size: int, psi: float, noise_mode: str,
         seed: int, steps: sizing.Steps | None = None) -> Sample:
    """Binned rejection sample: up to ``need[g]`` faces of every group g, at most ``budget``
    prior samples (whole batches of ``batch_size``; at least one batch).

    A sample joins the first group of ``groups`` that accepts it (``sampling.stream.assign``;
    disjoint groups for a threshold above 0.5 or the argmax rule). Within ``steps``'s
    memory budget each batch is rendered and judged in micro-batches (step 'reference';
    the same samples; random noise: whole batches).
    """
    judged, _ = (steps or sizing.Steps(None)).step(
        draw_factory(G, C, objective, groups, batch_size, psi, noise_mode), batch_size,
        "reference", allowed=(batch_size,) if noise_mode == "random" else None)
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


def features_factory(G: sg.Generator, C: Classifier, noise_mode: str, dtype=np.float32):
    """``batch -> (render.make_features(...), abstract arguments: ws [batch, num_ws, w_dim]
    of ``dtype``)`` for ``sizing.size_step``."""
    fn = render.make_features(G, C, noise_mode)

    def factory(b: int):
        return fn, (sizing.abstract(G.state), sizing.abstract(C.state), jax.ShapeDtypeStruct(
            (b, G.config.num_ws, G.config.w_dim), dtype))

    return factory


def check(ds: Dataset, own: Mapping[str, list[dict]], G: sg.Generator, C: Classifier, rc,
          log: Callable[[str], None] = print, steps: sizing.Steps | None = None) -> dict:
    """The section: every planned group with identities against its reference sample.

    Args:
      own: {group: identity records (variation 0)}.
      rc: ``config.report``: reference_size (0: no check), reference_budget,
        reference_permutations, batch_size, seed.
      steps: the report's memory budget: the draw (step 'reference') and the features of
        the dataset's latents (step 'reference features') run the largest batch within it,
        ``rc.batch_size`` at most (None: ``rc.batch_size``).

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
    steps = steps or sizing.Steps(None)
    ref = draw(G, C, objective, list(ds.groups), need, rc.reference_budget, rc.batch_size,
               psi, noise_mode, rc.seed, steps)
    features, batch = None, rc.batch_size
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
        ws = _ws(G, lat)
        if features is None:  # the stored latents' dtype (latent_dtype), as before
            features, batch = steps.step(features_factory(G, C, noise_mode, ws.dtype),
                                         rc.batch_size, "reference features")
        fx = render.batched(lambda w, f=features: f(G.state, C.state, w)[1], ws, batch)
        row["features"] = two_sample.compare(fx, ref.features[g][:m], "cosine",
                                             rc.reference_permutations, rc.seed)
    return out
