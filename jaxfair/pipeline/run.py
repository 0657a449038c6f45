"""The bulk generation run behind ``python -m jaxfair.generate``.

  plan (groups x quota -> units -> steps) -> plan.json (checked on resume)
  -> this process's steps whose units are not all DONE: compute (fused search, full render,
     variations) on the main thread, write shards in a thread pool
  -> barrier -> process 0: cross-unit near-duplicates, top-up units, manifest.json,
     optional ImageFolder view -> barrier

Resume = the same command on the same directory: finished units are skipped, a step with
a missing unit is recomputed whole (so every unit sees exactly the batch it would have seen
in an uninterrupted run) and only its missing units are written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

import jaxfair
from jaxfair.dataset import export as export_lib
from jaxfair.dataset import format as fmt
from jaxfair.dataset import lock as lock_lib
from jaxfair.dataset import manifest, verify, writer
from jaxfair.io import checkpoints
from jaxfair.io import images as imlib
from jaxfair.judge import attributes, sizing
from jaxfair.judge.crops import CROPS
from jaxfair.pipeline import distributed, finders
from jaxfair.pipeline import plan as plan_lib
from jaxfair.pipeline import recipe as recipe_lib
from jaxfair.pipeline import variations as var_lib
from jaxfair.pipeline import worker as compute
from jaxfair.pipeline.progress import Progress

MAX_TOP_UP_ROUNDS = 5


def validate(config: ml_collections.ConfigDict,
             schema: attributes.Schema | None = None) -> None:
    """Raises ValueError naming the first bad setting; with ``schema`` None only the settings
    that need no model (checked before the checkpoints load, so bad input fails at once)."""
    if config.method not in finders.METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose from "
                         f"{', '.join(finders.METHODS)}")
    for name in ("identities_per_group", "identities_per_unit", "units_per_step",
                 "searches_per_unit", "render_batch", "writer_threads"):
        if config[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {config[name]}")
    if config.variations < 0 or config.variation_tries < 1:
        raise ValueError(f"variations must be >= 0 and variation_tries >= 1, got "
                         f"{config.variations} and {config.variation_tries}")
    if config.variations and not config.directions:
        raise ValueError("variations > 0 needs a directions file (config.directions)")
    if config.get("variation_recipe", "random") not in ("random", "paper"):
        raise ValueError(f"variation_recipe must be random or paper, got "
                         f"{config.variation_recipe!r}")
    if config.get("variation_recipe") == "paper" and not config.directions:
        raise ValueError("variation_recipe paper needs a directions file (config.directions)")
    if config.get("crop", "none") not in CROPS:
        raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {config.crop!r}")
    if config.get("output_format", "") not in ("", *export_lib.FORMATS):
        raise ValueError(f"output_format must be '' or one of {', '.join(export_lib.FORMATS)}, "
                         f"got {config.output_format!r}")
    if config.image_format not in (*imlib.FORMATS, "none"):
        raise ValueError(f"image_format must be one of {(*imlib.FORMATS, 'none')}, got "
                         f"{config.image_format!r}")
    if config.latent_dtype not in ("float16", "float32"):
        raise ValueError(f"latent_dtype must be float16 or float32, got {config.latent_dtype!r}")
    if config.noise_mode not in ("const", "none"):
        raise ValueError(f"noise_mode must be const or none for reproducible datasets, got "
                         f"{config.noise_mode!r}")
    if config.identity_radius < 0:
        raise ValueError(f"identity_radius must be >= 0, got {config.identity_radius}")
    if not config.attributes:
        raise ValueError("attributes must name at least one classifier attribute")
    for name in config.attributes if schema is not None else ():
        schema.attribute(name)  # raises TargetError listing the valid names


def header(config: ml_collections.ConfigDict, G, C, groups: list[str], plan,
           latent_space: str, recipe: recipe_lib.Recipe | None = None) -> dict:
    """plan.json: what the run makes and from what (compared on resume)."""
    cfg = json.loads(config.to_json())
    return {
        "format": fmt.FORMAT, "jaxfair_version": jaxfair.__version__,
        "method": config.method, "attributes": list(config.attributes),
        "schema": {a.name: list(a.classes) for a in C.schema.attributes},
        "groups": {g: plan.quota for g in groups},
        "variations": len(recipe) if recipe is not None else config.variations,
        "image_format": config.image_format,
        "latent_space": latent_space,
        "latent_dtype": config.latent_dtype,
        "resolution": G.config.img_resolution,
        "checkpoints": {
            name: {"path": path, "sha256": checkpoints.fingerprint(path)}
            for name, path in (("generator", config.generator),
                               ("classifier", config.classifier))}
        | ({"directions": {"path": config.directions,
                           "sha256": checkpoints.fingerprint(config.directions)}}
           if config.variations or recipe is not None else {}),
        "config": manifest.fingerprint_config(cfg), "units": len(plan.units)} | (
        # Random stand-in weights (convert --random) are recorded so the dataset is never
        # mistaken for a real one; absent for real weights (older plan.json files match).
        {"random_standin": standin} if (standin := {
            name: model.meta["standin"] for name, model in (("generator", G), ("classifier", C))
            if model.meta.get("random_standin")}) else {})


def _compute_steps(worker, steps, out: writer.Writer, done: set[int], progress: Progress
                   ) -> None:
    for step in steps:
        for o in worker.step(step):
            if o.unit.id not in done:
                out.submit(o)
        progress.update(out.units_written, out.images_written)


def run(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False,
        log: Callable[[str], None] = print) -> dict:
    """Generates (or resumes) the dataset of ``config`` in ``workdir``; returns the manifest
    (process 0) or this process's counts (other processes).

    The job holds ``workdir``'s lock (dataset/lock.py) from before it writes until it
    returns; ``_run`` takes it only once the inputs are checked, so bad input writes nothing.
    """
    with contextlib.ExitStack() as held:
        return _run(config, workdir, overwrite, log, held)


def _run(config: ml_collections.ConfigDict, workdir: str, overwrite: bool,
         log: Callable[[str], None], held: contextlib.ExitStack) -> dict:
    validate(config)
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    validate(config, C.schema)
    paper = config.get("variation_recipe", "random") == "paper"
    directions = (var_lib.load(config.directions, G.config.w_dim)
                  if config.variations and not paper else None)
    groups = [attributes.format_target(t, C.schema) for _, t in
              attributes.enumerate_groups(C.schema, tuple(config.attributes))]
    plan = plan_lib.Plan.create(groups, config.identities_per_group,
                                config.identities_per_unit, config.units_per_step)
    budget, budget_why = sizing.budget_bytes(config.memory_budget_gb)
    finder = finders.create(config, G, C, groups, budget)
    # .npz sweeps are in units of L = w_std sqrt(w_dim), as variations.py's moves.
    recipe = (recipe_lib.load(config.directions, G.config.w_dim,
                              float(finder.prior.w_std) * G.config.w_dim**0.5)
              if paper else None)
    log(f"devices: {', '.join(str(d) for d in jax.local_devices())}; memory budget per step "
        f"{budget / sizing.GIB:.2f} GiB ({budget_why}); the config is in {workdir}/{fmt.PLAN}")
    head = header(config, G, C, groups, plan, finder.latent_space, recipe)
    proc, nproc = jax.process_index(), jax.process_count()
    held.enter_context(lock_lib.hold_for_run(workdir, proc, nproc))
    if proc == 0:
        manifest.prepare(workdir, head, overwrite)
        # Before the barrier: no process of this run writes yet, and the lock keeps others out.
        for path in verify.remove_temporaries(workdir):
            log(f"removed {path} (left by a run that stopped)")
    distributed.barrier("plan")
    if proc != 0:
        manifest.prepare(workdir, head, overwrite=False)  # must match what process 0 wrote
    progress = Progress(0, 0, log)
    finder.progress = progress.work
    with progress.heartbeat():
        result = _units(config, workdir, plan, finder, G, C, groups, directions, recipe,
                        budget, progress, log)
    distributed.barrier("units")
    worker = result.pop("worker")
    if proc == 0:
        result = _finalize(config, workdir, head, plan, worker, log)
        if config.get("output_format"):
            dest = f"{workdir}/export-{config.output_format}"
            # From the finished dataset (its identity numbering and near-duplicates are
            # only final now); resumable: a rerun continues a killed export, skips a done one
            # and redoes one of an older state of the dataset (stale="restart").
            s = export_lib.export(workdir, config.output_format, dest, crop="none",
                                  stale="restart", log=log)
            log(f"exported {s['images']} images to {dest} in {s['seconds']:.1f} s"
                + (f" (resumed after {s['resumed_parts']} parts)" if s["resumed_parts"]
                   else ""))
    distributed.barrier("manifest")
    return result


def _units(config, workdir: str, plan, finder, G, C, groups, directions, recipe,
           budget: int, progress: Progress, log) -> dict:
    """The finder's dataset-wide phase, then this process's steps; returns its counts."""
    proc, nproc = jax.process_index(), jax.process_count()
    finder.prepare(workdir, log)  # dataset-wide search before any unit (the planner)

    worker = compute.Worker(config, G, C, groups, finder, directions, recipe, budget)
    # Units the finder cannot make (a group short of its quota) are left out; the others of
    # their step are computed alone, as they would be in the full step (independent units).
    mine = [c for c in ([u for u in s if finder.covers(u)] for s in plan.steps_of(proc, nproc))
            if c]
    verify.remove_damaged(workdir, [u.id for s in mine for u in s], log,
                          config.writer_threads)
    done = writer.done_units(workdir)
    removed = writer.clean_partial(workdir, [u.id for s in mine for u in s])
    todo = [s for s in mine if not all(u.id in done for u in s)]
    per_identity = 1 + (len(recipe) if recipe is not None else config.variations)
    total_units = sum(u.id not in done for s in todo for u in s)
    total_images = sum(u.size for s in todo for u in s if u.id not in done) * per_identity
    log(f"process {proc}/{nproc}: {len(plan.units)} units in {len(plan.steps)} steps, "
        f"{len(mine)} steps here, {len(mine) - len(todo)} already done"
        + (f", {removed} partial units removed" if removed else ""))
    out = writer.Writer(workdir, config.image_format, config.latent_dtype,
                        config.writer_threads, max_pending=2 * config.units_per_step)
    progress.begin_units(total_units, total_images)
    try:
        _compute_steps(worker, todo, out, done, progress)
    finally:
        out.close()
    progress.close(out.units_written, out.images_written)
    for sized in step_sizes(worker):
        log(f"step {sized.name}: batch {sized.batch} (configured {sized.configured}), "
            f"compiled memory {sizing.describe(sized.memory)}")
    return {"units_written": out.units_written, "images_written": out.images_written,
            "worker": worker}


def step_sizes(worker) -> list[sizing.Sized]:
    """The steps this run sized within the memory budget (those it used)."""
    return [*worker.finder.sizes, *([worker.render_step] if worker.render_step else [])]


def _finalize(config, workdir: str, head: dict, plan, worker, log) -> dict:
    """Cross-unit near-duplicates, top-up units until every group has its quota, manifest."""
    w_std = float(np.asarray(worker.prior.w_std))
    for _ in range(MAX_TOP_UP_ROUNDS + 1):
        excluded, kept = manifest.exclude_near_duplicates(
            workdir, [u for u in plan.units if worker.finder.covers(u)], config.identity_radius,
            w_std)
        short = {g: plan.quota - kept.get(g, 0) for g in range(len(plan.groups))
                 if kept.get(g, 0) < plan.quota and g not in worker.finder.short}
        if not short:
            break
        plan = plan.extend(short)
        new = [s for s in plan.steps if s[0].id >= plan.segments[-1]]
        # A rerun of a finished dataset meets its top-up shards only here.
        verify.remove_damaged(workdir, [u.id for s in new for u in s], log,
                              config.writer_threads)
        done = writer.done_units(workdir)
        writer.clean_partial(workdir, [u.id for s in new for u in s])
        log(f"{len(excluded)} near-duplicate identities removed; top-up units for "
            + ", ".join(f"{plan.groups[g]} ({n})" for g, n in short.items()))
        out = writer.Writer(workdir, config.image_format, config.latent_dtype,
                            config.writer_threads, max_pending=2 * config.units_per_step)
        try:
            _compute_steps(worker, [s for s in new if not all(u.id in done for u in s)], out,
                           done, Progress(0, 0, log))
        finally:
            out.close()
    else:
        raise RuntimeError(f"groups still short of their quota after {MAX_TOP_UP_ROUNDS} "
                           f"rounds of top-up units (identity_radius "
                           f"{config.identity_radius} too large?)")
    covered = [u for u in plan.units if worker.finder.covers(u)]
    summary = manifest.summarise(workdir, head, dataclasses.replace(plan, units=tuple(covered)),
                                 excluded, worker.finder.evaluations)
    if worker.finder.short:
        summary["complete"] = False
        summary["shortfall"] = {
            plan.groups[g]: {"identities": summary["counts"][plan.groups[g]]["identities"],
                             "missing": plan.quota - summary["counts"][plan.groups[g]][
                                 "identities"],
                             "best_target_probs": worker.finder.best.get(plan.groups[g])}
            for g in sorted(worker.finder.short)}
    reduced = {z.name: z.record() for z in step_sizes(worker) if z.batch < z.configured}
    if reduced:  # below the configured batch: float rounding of another batch size
        summary["batch_sizes"] = reduced
    if config.imagefolder and config.image_format != "none":
        summary["imagefolder_images"] = manifest.write_imagefolder(workdir, plan, excluded)
    manifest.write_json(f"{workdir}/{fmt.MANIFEST}", summary)
    return summary

