"""The search job: S fused searches for one target, chunk by chunk, then write the results.

The host loop only moves metrics out between chunks (one ``Engine.run`` call = T
generations) and logs progress; it stops when ``num_accepted`` distinct latents are
archived or after ``max_generations``. Accepted latents are then rendered at full
resolution and classified again (the score-resolution check).

Output (``workdir``, written atomically):
  latents.npy        accepted latents in the space's own units: z [N, z_dim], w [N, w_dim]
                     or wplus [N, num_ws, w_dim]
  records.jsonl      per latent: id, search, generation, target masses at the score
                     resolution and at full resolution, predicted classes at full resolution
  contact_sheet.png  the accepted faces (first 64)
  summary.json       counts, rates, timing, label agreement across resolutions, settings
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
from jaxfair.io import atomic
from jaxfair.io import images as imlib
from jaxfair.judge import attributes
from jaxfair.search import engine as eng_lib
from jaxfair.search import objective as obj
from jaxfair.search import spaces, strategies


class TargetNotReached(RuntimeError):
    """The budget ran out before any candidate was accepted."""


def validate(sc: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first bad ``config.search`` setting."""
    if sc.space not in spaces.SPACES:
        raise ValueError(f"unknown space {sc.space!r}; choose from {', '.join(spaces.SPACES)}")
    for name in ("population_size", "num_searches", "generations_per_chunk",
                 "max_generations", "num_accepted", "archive_capacity"):
        if sc[name] < 1:
            raise ValueError(f"search.{name} must be >= 1, got {sc[name]}")
    if sc.duplicate_radius < 0:
        raise ValueError(f"search.duplicate_radius must be >= 0, got {sc.duplicate_radius}")
    if sc.get("feature_radius", 0.0) < 0:
        raise ValueError(f"search.feature_radius must be >= 0, got {sc.feature_radius}")
    if sc.get("dtype", "float32") not in ("float32", "bfloat16"):
        raise ValueError(f"search.dtype must be float32 or bfloat16, got {sc.dtype!r}")
    if sc.sigma_init <= 0:
        raise ValueError(f"search.sigma_init must be > 0, got {sc.sigma_init}")


def build_engine(config: ml_collections.ConfigDict, G, C) -> eng_lib.Engine:
    """The engine described by ``config.search`` for loaded models (validated)."""
    sc = config.search
    validate(sc)
    space = spaces.Space.create(sc.space, G.config)
    objective = obj.Objective(threshold=sc.threshold, mode=sc.accept_mode,
                              prior_weight=sc.prior_weight, novelty_weight=sc.novelty_weight,
                              novelty_radius=sc.novelty_radius)
    strategy = strategies.build(sc.strategy, space, sc.population_size, sc.sigma_init,
                                sc.learning_rate)
    return eng_lib.Engine.create(
        G, C, space, strategy, objective, num_searches=sc.num_searches,
        generations=sc.generations_per_chunk, psi=config.truncation_psi,
        noise_mode=config.noise_mode, score_resolution=sc.score_resolution or None,
        archive_capacity=sc.archive_capacity, duplicate_radius=sc.duplicate_radius,
        # Configs written before these settings existed keep their meaning (off, float32).
        feature_radius=sc.get("feature_radius", 0.0), dtype=sc.get("dtype", "float32"),
        eval_batch=sc.get("eval_batch", 0))


def collect(state: eng_lib.SearchState, space: spaces.Space, radius: float, limit: int,
            feature_radius: float = 0.0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Archived rows of all searches, de-duplicated across searches (host side) with the
    archive's rule: latents within ``radius`` or, when ``feature_radius > 0``, features
    within ``feature_radius`` (archive.feature_distance) of an earlier kept row.

    Returns:
      (u [N, D], search [N], generation [N], masses [N, A]) in (generation, search) order,
      at most ``limit`` rows.
    """
    a = jax.device_get(state.archive)
    rows = [(int(a.generation[s, i]), s, i) for s in range(a.count.shape[0])
            for i in range(min(int(a.count[s]), a.latents.shape[1]))]
    rows.sort()
    kept: list[tuple[int, int, int]] = []
    canon: list[np.ndarray] = []
    units: list[np.ndarray] = []
    for g, s, i in rows:
        c = np.asarray(spaces.canonical(space, a.latents[s, i][None]))[0]
        f = np.asarray(a.features[s, i], np.float64)
        f = f / max(float(np.linalg.norm(f)), 1e-12)
        if any(np.sqrt(np.mean((c - k) ** 2)) <= radius for k in canon):
            continue
        if feature_radius > 0 and any(np.linalg.norm(f - k) <= feature_radius for k in units):
            continue
        kept.append((g, s, i))
        canon.append(c)
        units.append(f)
        if len(kept) == limit:
            break
    if not kept:
        d = a.latents.shape[-1]
        return np.zeros((0, d), np.float32), np.zeros(0, int), np.zeros(0, int), \
            np.zeros((0, a.masses.shape[-1]), np.float32)
    g, s, i = map(np.asarray, zip(*kept))
    return a.latents[s, i], s, g, a.masses[s, i]


def _best_report(state, schema: attributes.Schema, target_text: str) -> str:
    best = np.max(np.asarray(jax.device_get(state.best_masses)), axis=0)
    parts = ", ".join(f"{a.name} {p:.3f}" for a, p in zip(schema.attributes, best))
    return (f"target {target_text!r} not reached after {int(np.max(state.generation))} "
            f"generations ({int(np.sum(state.evaluated))} candidates); best target probability "
            f"per attribute: {parts}")


def run(config: ml_collections.ConfigDict, workdir: str, target_text: str,
        log: Callable[[str], None] = print) -> dict:
    """Searches for ``target_text`` and writes accepted latents to ``workdir``."""
    atomic.check_empty(workdir, "workdir")
    sc = config.search
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    target = attributes.parse_target(target_text, C.schema)
    engine = build_engine(config, G, C)
    key = jax.random.key(sc.seed)
    prior = spaces.estimate_prior(G, jax.random.fold_in(key, 1))
    targets = attributes.stack_targets([target] * sc.num_searches)
    keys = jax.random.split(jax.random.fold_in(key, 2), sc.num_searches)
    g_state, c_state = G.state, C.state
    if len(jax.devices()) > 1:
        mesh = eng_lib.search_mesh(sc.num_searches)
        g_state, c_state, prior = eng_lib.replicate((g_state, c_state, prior), mesh)
        targets, keys = eng_lib.shard((targets, keys), mesh)

    t0 = time.perf_counter()
    state = jax.block_until_ready(engine.init(g_state, c_state, prior, targets, keys))
    log(f"compiled and ran the initial batch in {time.perf_counter() - t0:.1f}s")
    per_chunk = sc.num_searches * engine.population_size * sc.generations_per_chunk
    gens, search_s, first_run = 1, 0.0, None
    while gens < sc.max_generations:
        t = time.perf_counter()
        state, metrics = engine.run(g_state, c_state, prior, targets, keys, state)
        metrics = jax.device_get(metrics)  # the one host transfer per chunk
        dt = time.perf_counter() - t
        if first_run is None:
            first_run = dt  # includes compilation
        else:
            search_s += dt
        gens += sc.generations_per_chunk
        archived = int(np.sum(metrics["archived"][-1]))
        log(f"generation {gens}: accepted {int(np.sum(state.accepted))}, archived {archived}, "
            f"{per_chunk / dt:.0f} candidates/s")
        if archived >= sc.num_accepted:
            break
    u, search_idx, generation, masses = collect(state, engine.space, sc.duplicate_radius,
                                                sc.num_accepted, engine.feature_radius)
    if len(u) == 0:
        raise TargetNotReached(_best_report(state, C.schema, target_text))
    return _write(config, workdir, target_text, engine, G, C, prior, state, u, search_idx,
                  generation, masses, {"first_chunk_s": first_run, "steady_s": search_s})


def _render(engine, G, C, prior, u, batch: int = 64):
    probs, imgs = [], []
    for i in range(0, len(u), batch):
        p, img = engine.render(G.state, C.state, prior, u[i:i + batch])
        probs.append(jax.device_get(p))
        imgs.append(np.asarray(imlib.to_uint8(img)))
    return {k: np.concatenate([p[k] for p in probs]) for k in probs[0]}, np.concatenate(imgs)


def _write(config, workdir, target_text, engine, G, C, prior, state, u, search_idx,
           generation, masses, timing) -> dict:
    target = attributes.parse_target(target_text, C.schema)
    probs_full, imgs = _render(engine, G, C, prior, u)
    full_masses = np.asarray(obj.target_masses(probs_full, target, C.schema.names))
    full_ok = np.asarray(obj.accepted(engine.objective, probs_full, target))
    latents = np.asarray(spaces.to_latent(engine.space, prior, u), np.float32)
    names = [a.name for a in C.schema.attributes]
    with atomic.directory(workdir, "workdir") as tmp:
        np.save(os.path.join(tmp, "latents.npy"), latents)
        with open(os.path.join(tmp, "records.jsonl"), "w") as f:
            for i in range(len(u)):
                pred = {a.name: a.classes[int(np.argmax(probs_full[a.name][i]))]
                        for a in C.schema.attributes}
                f.write(json.dumps({
                    "id": i, "search": int(search_idx[i]), "generation": int(generation[i]),
                    "mass": dict(zip(names, np.round(masses[i], 5).tolist())),
                    "mass_full": dict(zip(names, np.round(full_masses[i], 5).tolist())),
                    "accepted_full": bool(full_ok[i]), "pred_full": pred}) + "\n")
        sheet = imlib.contact_sheet(imgs[:64], cols=8)
        with open(os.path.join(tmp, "contact_sheet.png"), "wb") as f:
            f.write(imlib.encode(sheet))
        evaluated = int(np.sum(state.evaluated))
        summary = {
            "target": attributes.format_target(target, C.schema),
            "num_accepted": len(u), "candidates_evaluated": evaluated,
            "accepted_with_duplicates": int(np.sum(state.accepted)),
            "duplicates_rejected": int(np.sum(state.archive.duplicates)),
            "archive_overflow": int(np.sum(state.archive.overflow)),
            "generations": int(np.max(state.generation)),
            "full_resolution_agreement": float(np.mean(full_ok)),
            "score_resolution": engine.score_resolution or G.config.img_resolution,
            "dtype": engine.dtype, "timing": timing, "space": engine.space.name,
            "strategy": config.search.strategy,
            "generator": config.generator, "classifier": config.classifier,
            "jaxfair_version": jaxfair.__version__, "config": json.loads(config.to_json())}
        with open(os.path.join(tmp, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary
