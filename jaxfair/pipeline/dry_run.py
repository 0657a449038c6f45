"""``python -m jaxfair.generate ... --dry_run``: the plan and the compiled memory of every
batched step, without computing or writing anything.

Loads the two checkpoints (reading only), validates the config against the classifier's
schema, builds the plan (groups, units, steps) and compiles each batched step of the
config's method with abstract arguments (``jax.ShapeDtypeStruct``: no batch is allocated
or run), choosing for each the largest batch within the memory budget
(``jaxfair.judge.sizing.size_step``) among the configured batch and the powers of two
below it. The factories are the run's own (one definition each), so the sizes printed are
the ones a run with the same budget uses:

  planner       stream   ``planner.stream_batch`` prior samples, rendered and judged in
                         micro-batches of the chosen size (the same samples)
                gated    ``planner.guided_batch`` gated proposals of the rare groups, judged
                         step's proposals judged in micro-batches
  search        evaluate one ``Engine.run`` call (search.generations_per_chunk
                         generations) scoring each generation's S x P candidates (S =
                         units_per_step x searches_per_unit, P = search.population_size)
                         in micro-batches of the chosen size; search.eval_batch (0: S x P)
                         is the upper bound (also of ``python -m jaxfair.search``)
  distribution  label    ``distribution.batch_size`` prior samples labelled by ``sample fit``
                draw     ``distribution.batch_size`` mixture draws rendered and judged (once
                         a fitted model is in ``distribution.workdir``)
  every method  render   ``render_batch`` full-resolution renders, classified again

Nothing is written: no work directory, no plan.json. A step whose smallest batch exceeds
the budget is a ``sizing.BudgetError`` (one line, exit 2).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import jax
import ml_collections

import jaxfair
from jaxfair.judge import attributes, sizing
from jaxfair.judge import render as render_lib
from jaxfair.pipeline import finders
from jaxfair.pipeline import plan as plan_lib
from jaxfair.pipeline import run as run_lib


@dataclasses.dataclass(frozen=True)
class StepSize:
    """One batched step of the dry run: configured and chosen batch, compiled memory."""

    name: str
    setting: str  # the config key that sets its batch
    configured: int
    chosen: int
    memory: sizing.StepMemory


def step_factories(config: ml_collections.ConfigDict, G, C, groups: list[str]
                   ) -> list[tuple[str, str, int, Callable]]:
    """(name, config key, configured batch, batch -> (jitted fn, abstract args)) of every
    batched step of ``config.method``: the factories the run sizes its steps with."""
    steps = []
    if config.method in ("planner", "search"):
        steps += finders.create(config, G, C, groups).step_factories()
    elif config.method == "distribution":
        from jaxfair.distribution import draw as draw_lib
        from jaxfair.distribution import fit as fit_lib

        dc = config.distribution
        names = fit_lib.model_groups(C.schema, dc)[0]
        steps.append(("label", "distribution.batch_size", dc.batch_size,
                      fit_lib.label_factory(G, C, dc, len(names))))
        if os.path.isdir(dc.workdir):
            fitted = fit_lib.load(dc.workdir)
            steps.append(("draw", "distribution.batch_size", dc.batch_size,
                          draw_lib.draw_factory(G, C, fitted, dc.batch_size,
                                                fitted.meta["noise_mode"])))
    steps.append(("render", "render_batch", config.render_batch,
                  render_lib.render_factory(G, C, config.noise_mode, config.crop)))
    return steps


def run(config: ml_collections.ConfigDict, log: Callable[[str], None] = print) -> dict:
    """Prints the plan and the chosen batch and compiled memory of every step; writes nothing.

    Returns:
      {'groups', 'units', 'steps', 'budget_bytes', 'budget', 'sizes': [StepSize]}.

    Raises:
      ValueError (incl. sizing.BudgetError, attributes.TargetError), CheckpointDirError.
    """
    run_lib.validate(config)
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    run_lib.validate(config, C.schema)
    groups = [attributes.format_target(t, C.schema) for _, t in
              attributes.enumerate_groups(C.schema, tuple(config.attributes))]
    plan = plan_lib.Plan.create(groups, config.identities_per_group,
                                config.identities_per_unit, config.units_per_step)
    budget, why = sizing.budget_bytes(config.memory_budget_gb)
    log(f"dry run (nothing is written): method {config.method}, {len(groups)} groups x "
        f"{config.identities_per_group} identities = {len(plan.units)} units in "
        f"{len(plan.steps)} steps; generator {G.config.img_resolution} px; devices "
        f"{', '.join(str(d) for d in jax.local_devices())}")
    log(f"groups: {', '.join(groups)}")
    log(f"memory budget per step: {budget / sizing.GIB:.2f} GiB ({why})")
    sizes = []
    for name, setting, configured, factory in step_factories(config, G, C, groups):
        chosen, mem = sizing.choose_batch(factory, budget, sizing.candidates(configured),
                                          name=name)
        sizes.append(StepSize(name, setting, configured, chosen, mem))
        verdict = ("fits" if chosen == configured else
                   f"over budget at {configured}: runs {chosen} at a time")
        log(f"  {name:<9} {setting} = {configured}: {verdict}; compiled memory at "
            f"{chosen}: {sizing.describe(mem)}")
    return {"groups": groups, "units": len(plan.units), "steps": len(plan.steps),
            "budget_bytes": budget, "budget": why, "sizes": sizes}
