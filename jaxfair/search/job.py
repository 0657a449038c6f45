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
  summary.json       counts, rates, timing, label agreement across resolutions, settings;
                     ``batch_sizes`` when the memory budget
                     (``--config.memory_budget_gb``, jaxfair.judge.sizing) made the engine
                     score candidates in micro-batches below ``search.eval_batch``

Fewer than ``num_accepted`` found (but some): written all the same, ``summary.json`` has
``num_accepted`` < ``num_requested``; none found: ``readout.TargetNotReached``, nothing
written.
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
from jaxfair import keys as keylib
from jaxfair.io import atomic
from jaxfair.io import images as imlib
from jaxfair.judge import attributes, render, sizing
from jaxfair.search import builder, readout, spaces
from jaxfair.search import engine as eng_lib
from jaxfair.search import objective as obj


def run(config: ml_collections.ConfigDict, workdir: str, target_text: str,
        log: Callable[[str], None] = print) -> dict:
    """Searches for ``target_text`` and writes accepted latents to ``workdir``."""
    atomic.check_empty(workdir, "workdir")
    sc = config.search
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    target = attributes.parse_target(target_text, C.schema)
    engine = builder.build(builder.Settings.from_config(config), G, C)
    # The streams of the bulk job: the same seed gives the same prior, and these searches
    # are those of its unit 0.
    root = keylib.root(sc.seed)
    prior = spaces.estimate_prior(G, keylib.prior(root))
    targets = attributes.stack_targets([target] * sc.num_searches)
    keys = jax.random.split(keylib.unit(root, 0), sc.num_searches)
    mesh, (g_state, c_state, prior) = eng_lib.place(sc.num_searches, (G.state, C.state, prior))
    targets, keys = eng_lib.shard((targets, keys), mesh)
    args = (g_state, c_state, prior, targets, keys)

    t0 = time.perf_counter()
    run, sized = engine.run, None
    if mesh is None:  # searches sharded over devices keep the configured eval_batch
        budget, why = sizing.budget_bytes(config.memory_budget_gb)
        sized = eng_lib.size_run(engine, budget, *args)
        engine, run = sized.jitted.engine, sized
        log(f"step evaluate: micro-batch {sized.batch} (configured {sized.configured}) within "
            f"{budget / sizing.GIB:.2f} GiB ({why}), compiled memory "
            f"{sizing.describe(sized.memory)}")
    state = jax.block_until_ready(engine.init(*args))
    log(f"compiled and ran the initial batch in {time.perf_counter() - t0:.1f}s")
    per_chunk = sc.num_searches * engine.population_size * sc.generations_per_chunk
    gens, search_s, first_run = 1, 0.0, None
    while gens < sc.max_generations:
        t = time.perf_counter()
        state, metrics = run(*args, state)
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
    u, search_idx, generation, masses = readout.collect(
        state, engine.space, engine.duplicate_radius, sc.num_accepted, engine.feature_radius)
    if len(u) == 0:
        raise readout.TargetNotReached(readout.best_report(state, C.schema, target_text))
    if len(u) < sc.num_accepted:  # written all the same; the entry point exits 3
        log(f"found {len(u)} of {sc.num_accepted}: "
            + readout.best_report(state, C.schema, target_text))
    reduced = ({"evaluate": sized.record()} if sized is not None
               and sized.batch < sized.configured else {})
    return _write(config, workdir, target_text, engine, G, C, prior, state, u, search_idx,
                  generation, masses, {"first_chunk_s": first_run, "steady_s": search_s},
                  reduced)


def _render(engine, G, C, prior, u, batch: int = 64):
    def one(x):
        probs, img = engine.render(G.state, C.state, prior, x)
        return probs, imlib.to_uint8(img)
    return render.batched(one, u, batch)


def _write(config, workdir, target_text, engine, G, C, prior, state, u, search_idx,
           generation, masses, timing, batch_sizes: dict) -> dict:
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
            "num_accepted": len(u), "num_requested": config.search.num_accepted,
            "candidates_evaluated": evaluated,
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
        if batch_sizes:  # a step ran below its configured batch (memory budget)
            summary["batch_sizes"] = batch_sizes
        with open(os.path.join(tmp, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary
