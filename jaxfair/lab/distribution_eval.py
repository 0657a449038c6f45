"""Acceptance numbers of the distribution method on the demo world, beside the search engine.

``python -m jaxfair.lab evaluate --workdir=DIR`` measures, per group of
``config.distribution.groups`` ('' = every combination group of the fit):

- *distribution, unverified*: ``eval_samples`` draws (``distribution_draw``); purity
  by the classifier (group mass >= the fit's threshold) and by ground truth; samples/s;
  distinct share.
- *distribution, verified* (``--verify``): ``eval_samples`` kept samples; purity by ground
  truth (by the classifier it is 1 by construction); kept samples/s; distinct share.
- *search*: ``config.search`` as given, for a fixed budget of ``search.max_generations``
  (no early stop, every accepted candidate archived: ``hybrid.compare``): accepted/s in
  the steady state; on the first ``eval_samples`` distinct accepted latents, purity by the
  classifier on full-resolution renders (the acceptance itself when the search scores at
  full resolution) and by ground truth; distinct share of all accepted candidates.
  Outside space z the same numbers for *start_only* and *hybrid*, the same search started
  from the group's mixture, with ``search.sigma_init`` or with the mixture component's
  spread (``hybrid.ARMS``; same engine, keys and budget).

Ground truth (``ground_truth``): exact for z latents at truncation psi 1; a w (every draw
of the distribution method, a W-space search result, or a truncated z's w) gets the label
of the nearest point of the generator's W surface, with the residual and the pixel gap
between the two faces reported, and the labeller's accuracy on points with known labels
(``projection_check``). W+ latents get none (a per-layer w is no single point of W).

One yardstick of identity for every method: ``jaxfair.identity`` (w in prior units, within
``config.identity_radius``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

import jaxfair
from jaxfair import identity
from jaxfair.distribution import draw as distribution_draw
from jaxfair.io import atomic
from jaxfair.judge import attributes, render
from jaxfair.lab import ground_truth as gt
from jaxfair.lab import hybrid, measure
from jaxfair.search import builder, spaces
from jaxfair.search import engine as eng_lib
from jaxfair.search import objective as obj


def _percentiles(x: np.ndarray) -> dict:
    if not len(x):
        return {}
    p = np.percentile(x, [50, 95, 100])
    return {"median": round(float(p[0]), 4), "p95": round(float(p[1]), 4),
            "max": round(float(p[2]), 4)}


def truth_of_w(G, w: np.ndarray, scale: np.ndarray, target: attributes.Target) -> dict:
    """Ground-truth purity of w [N, w_dim] in ``target``, by projection onto W's surface,
    with the residual (W stds) and image gap ([-1, 1] pixels) percentiles."""
    p = gt.project(G, w, scale)
    ok = gt.in_group(gt.labels_of_z(p.z), target)
    return {"purity": round(float(np.mean(ok)), 4), "how": "projection onto W's surface",
            "residual": _percentiles(p.residual),
            "image_gap": _percentiles(gt.image_gap(G, w, p.z))}


def draw_numbers(s: distribution_draw.Sampler, names: list[str], count: int, verify: bool,
                 dc: ml_collections.ConfigDict, scale: np.ndarray, identity_radius: float,
                 log: Callable[[str], None]) -> tuple[dict, np.ndarray, list[str]]:
    """One distribution arm: ``count`` samples per group, verified or not.

    Returns:
      (numbers per group, w [N, w_dim] of every sample, group name of every row).
    """
    plan = [(s.fitted.groups.index(n), count) for n in names]
    kept, stats = distribution_draw.draw_groups(
        s, plan, verify, dc.seed, dc.max_draw_factor if verify else 1, identity_radius, log)
    w = np.stack([it[1] for it in kept])
    groups = [it[0] for it in kept]
    out = {}
    for name, st in stats.items():
        rows = np.array([g == name for g in groups])
        truth = truth_of_w(s.G, w[rows], scale, attributes.parse_target(name, s.C.schema))
        out[name] = {"samples": int(rows.sum()), "drawn": st["drawn"],
                     "classifier_purity": st["purity_before"],
                     "classifier_purity_kept": st["purity_after"],
                     "ground_truth_purity": truth["purity"], "ground_truth": truth,
                     "samples_per_s": st["samples_per_s"],
                     "distinct_share": st["distinct_share"]}
    return out, w, groups


def search_numbers(config: ml_collections.ConfigDict, G, C, fitted, groups: list[str],
                   scale: np.ndarray, limit: int, log: Callable[[str], None]) -> dict:
    """The search arms of ``run``: ``{group: {"search": row, "start_only": row,
    "hybrid": row}}`` (the last two only outside space z), from one ``hybrid.compare``
    (one engine, one compile)."""
    sc = config.search
    arms = ("plain",) if sc.space == "z" else hybrid.ARMS
    comp = hybrid.compare(config, G, C, fitted, [fitted.groups.index(n) for n in groups],
                          sc.max_generations, arms, log)
    out = {}
    for name, by_arm in comp.arms.items():
        target = attributes.parse_target(name, C.schema)
        out[name] = {}
        for a, arm in by_arm.items():
            row = _arm_numbers(config, comp, arm, G, C, target, scale, limit)
            log(f"{name} {a}: {row}")
            out[name]["search" if a == "plain" else a] = row
    return out


def _arm_numbers(config, comp: hybrid.Comparison, arm: measure.Arm, G, C, target, scale,
                 limit) -> dict:
    engine, psi = comp.engine, config.truncation_psi
    numbers = measure.summarise(arm, engine, config.identity_radius)
    row = {k: numbers[k] for k in ("accepted_per_s", "candidates_per_s", "steady_acceptance",
                                   "accepted", "candidates", "accepted_initial_batch",
                                   "median_first_accept_generation")}
    u, w = measure.accepted_w(arm, engine, comp.prior, G, psi)  # every accepted candidate
    if not len(u):
        return row
    novel = identity.first_distinct(
        identity.to_prior_units(w, comp.prior.w_avg, comp.prior.w_std), config.identity_radius)
    pick = np.flatnonzero(novel)[:limit]
    row.update(distinct_accepted=int(novel.sum()),
               distinct_share=round(float(np.mean(novel)), 4), judged=len(pick))
    if engine.score_resolution is None:
        # Scored at full resolution: every accepted candidate passed on exactly these
        # probabilities, so re-rendering would only repeat them.
        row["classifier_purity_full_resolution"] = 1.0
        row["classifier_judge"] = "acceptance itself (scored at full resolution)"
    else:
        probs = _render_probs(engine, G, C, comp.prior, u[pick])
        row["classifier_purity_full_resolution"] = round(float(np.mean(
            obj.accepted(engine.objective, probs, target))), 4)
        row["classifier_judge"] = "full-resolution render of the accepted latents"
    if engine.space.name == "wplus":
        row["ground_truth"] = {"purity": None,
                               "how": "none: a W+ latent (one w per layer) is no point of W"}
    elif engine.space.name == "z" and psi == 1.0:
        z = np.asarray(spaces.to_latent(engine.space, comp.prior, u[pick]))
        row["ground_truth"] = {"purity": round(float(np.mean(
            gt.in_group(gt.labels_of_z(z), target))), 4), "how": "exact (z)"}
    else:  # w, or a truncated z's w
        row["ground_truth"] = truth_of_w(G, w[pick], scale, target)
    row["ground_truth_purity"] = row["ground_truth"]["purity"]
    return row


def _render_probs(engine: eng_lib.Engine, G, C, prior, u: np.ndarray, batch: int = 64):
    """Full-resolution probabilities of u [N, D], in padded batches (one compile)."""
    return render.batched(lambda x: engine.render(G.state, C.state, prior, x)[0], u, batch)


def run(config: ml_collections.ConfigDict, workdir: str, out: str,
        log: Callable[[str], None] = print) -> dict:
    """Measures the groups of ``config.distribution.groups``; writes ``out`` atomically:
    ``summary.json``, ``unverified.npz`` and ``verified.npz`` (the draws' w and group).

    Raises:
      ValueError: not the demo world (no ground truth), groups without a model, bad settings.
    """
    dc = config.distribution
    if dc.eval_samples < 1:
        raise ValueError(f"distribution.eval_samples must be >= 1, got {dc.eval_samples}")
    atomic.check_empty(out, "output directory")
    s = distribution_draw.sampler(workdir, dc.batch_size)
    fitted, G, C = s.fitted, s.G, s.C
    if not gt.is_demo_generator(G):
        raise ValueError(f"evaluate needs ground truth, which only the demo world's generator "
                         f"has; {fitted.meta['generator']} is not one")
    gt.check_invertible(G.config)
    builder.validate(config.search)
    names = [fitted.groups[g] for g in hybrid.select_groups(dc.groups, C.schema, fitted)]
    scale = np.asarray(fitted.ae_state["w_std"][...])
    start = time.time()
    # As many points as each group's draws: the refinement compiles once for both.
    check = gt.projection_check(G, jax.random.key(dc.seed), scale, n=dc.eval_samples)
    log(f"projection check (labels recovered on W's surface): {check}")
    distribution_draw.compile_step(s)
    with atomic.directory(out, "output directory") as tmp:
        arms = {}
        for arm, verify in (("unverified", False), ("verified", True)):
            arms[arm], w, groups = draw_numbers(s, names, dc.eval_samples, verify, dc, scale,
                                                config.identity_radius, log)
            np.savez(os.path.join(tmp, f"{arm}.npz"), w=w, group=np.array(groups))
        searched = search_numbers(config, G, C, fitted, names, scale, dc.eval_samples, log)
        summary = {
            "groups": {n: {**{a: arms[a][n] for a in arms}, **searched[n]} for n in names},
            "projection_check": check, "model": workdir,
            "threshold": fitted.meta["threshold"], "search_threshold": config.threshold,
            "eval_samples": dc.eval_samples,
            "identity_radius": config.identity_radius,
            "covariance": fitted.meta["config"].get("covariance", "diag"),
            "search": {k: config.search[k] for k in (
                "space", "strategy", "num_searches", "population_size",
                "generations_per_chunk", "max_generations", "accept_mode",
                "sigma_init", "prior_weight", "novelty_weight", "score_resolution", "seed")},
            "truncation_psi": config.truncation_psi,
            "seconds": round(time.time() - start, 1),
            "devices": [str(d) for d in jax.devices()],
            "jaxfair_version": jaxfair.__version__}
        with open(os.path.join(tmp, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary

