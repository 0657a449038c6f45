"""``python -m jaxfair.generate ... --dry_run``: the plan and the compiled memory of every
batched step, without computing or writing anything.

Loads the two checkpoints (reading only), validates the config against the classifier's
schema, builds the plan (groups, units, steps) and compiles each batched step of the
config's method with abstract arguments (``jax.ShapeDtypeStruct``: no batch is allocated
or run), choosing for each the largest batch within the memory budget
(``jaxfair.judge.sizing.choose_batch``) among the configured batch and the powers of two
below it:

  planner       stream   render-and-judge of ``planner.stream_batch`` prior samples
                chains   ``planner.num_chains`` chains x ``planner.chain_steps`` steps
  search        evaluate render-and-judge of one generation's candidates
                         (units_per_step x searches_per_unit x search.population_size, or
                         search.eval_batch)
  distribution  draw     ``distribution.batch_size`` mixture draws rendered and judged
  every method  render   ``render_batch`` full-resolution renders, classified again

Nothing is written: no work directory, no plan.json. The chosen sizes are reported, not
applied (the configured ones run); a step whose smallest batch exceeds the budget is a
``sizing.BudgetError`` (one line, exit 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

import jaxfair
from jaxfair.judge import attributes, sizing
from jaxfair.judge import render as render_lib
from jaxfair.pipeline import plan as plan_lib
from jaxfair.pipeline import run as run_lib
from jaxfair.sampling import chains as chain_lib
from jaxfair.sampling import stream as stream_lib
from jaxfair.search import objective as obj


@dataclasses.dataclass(frozen=True)
class StepSize:
    """One batched step of the dry run: configured and chosen batch, compiled memory."""

    name: str
    setting: str  # the config key that sets its batch
    configured: int
    chosen: int
    memory: sizing.StepMemory


def candidates(configured: int) -> tuple[int, ...]:
    """The configured batch and every power of two below it."""
    return tuple(sorted({configured} | {2 ** i for i in range(configured.bit_length())
                                        if 2 ** i < configured}))


def step_factories(config: ml_collections.ConfigDict, G, C, groups: list[str]
                   ) -> list[tuple[str, str, int, Callable]]:
    """(name, config key, configured batch, batch -> (jitted fn, abstract args)) of every
    batched step of ``config.method``."""
    g_abs, c_abs = sizing.abstract(G.state), sizing.abstract(C.state)
    key = jax.random.key(0)
    targets = [attributes.parse_target(g, C.schema) for g in groups]
    stacked = attributes.stack_targets(targets)
    judge = stream_lib.Judge(G, C, obj.Objective(threshold=config.threshold,
                                                 mode=config.search.accept_mode),
                             config.truncation_psi, config.noise_mode)

    def judge_step(b):
        return stream_lib.make_stream_step(judge, b), (g_abs, c_abs, key, stacked)

    def render_step(b):
        ws = jax.ShapeDtypeStruct((b, G.config.num_ws, G.config.w_dim), jnp.float32)
        return render_lib.make_render(G, C, config.noise_mode, config.crop), (g_abs, c_abs, ws)

    steps = []
    if config.method == "planner":
        p = config.planner
        steps.append(("stream", "planner.stream_batch", p.stream_batch, judge_step))
        if p.num_chains:
            run = chain_lib.make_chain_run(judge.accepts, p.chain_steps)
            # The planner's span width: K - 1 directions per constrained attribute.
            k = max(1, max(sum(len(a.classes) - 1 for a in C.schema.attributes
                               if not bool(jnp.all(t.masks[a.name]))) for t in targets))

            def chain_step(c):
                chain_targets = attributes.stack_targets([targets[i % len(targets)]
                                                          for i in range(c)])
                d = G.config.z_dim
                f32 = jnp.float32
                # (targets, q, mu, chol, free step, period, z): chains.make_chain_run
                return run, (g_abs, c_abs, key, chain_targets,
                             jax.ShapeDtypeStruct((c, d, k), f32),
                             jax.ShapeDtypeStruct((c, k), f32),
                             jax.ShapeDtypeStruct((c, k, k), f32),
                             jax.ShapeDtypeStruct((c,), f32),
                             jax.ShapeDtypeStruct((c,), jnp.int32),
                             jax.ShapeDtypeStruct((c, d), f32))

            steps.append(("chains", "planner.num_chains", p.num_chains, chain_step))
    elif config.method == "search":
        s = config.search
        n = s.eval_batch or config.units_per_step * config.searches_per_unit * s.population_size
        steps.append(("evaluate", "search.eval_batch", n, judge_step))
    elif config.method == "distribution":
        def draw_step(b):
            return (render_lib.make_step(G, C, b, config.truncation_psi, config.noise_mode),
                    (g_abs, c_abs, key, stacked))

        steps.append(("draw", "distribution.batch_size", config.distribution.batch_size,
                      draw_step))
    steps.append(("render", "render_batch", config.render_batch, render_step))
    return steps


def run(config: ml_collections.ConfigDict, log: Callable[[str], None] = print) -> dict:
    """Prints the plan and the chosen batch and compiled memory of every step; writes nothing.

    Returns:
      {'groups', 'units', 'steps', 'budget_bytes', 'budget', 'sizes': [StepSize]}.

    Raises:
      ValueError (incl. sizing.BudgetError, attributes.TargetError), CheckpointDirError.
    """
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
        chosen, mem = sizing.choose_batch(factory, budget, candidates(configured), name=name)
        sizes.append(StepSize(name, setting, configured, chosen, mem))
        verdict = ("fits" if chosen == configured else
                   f"over budget at {configured}: largest fitting batch {chosen}")
        log(f"  {name:<9} {setting} = {configured}: {verdict}; compiled memory at "
            f"{chosen}: {sizing.describe(mem)}")
    return {"groups": groups, "units": len(plan.units), "steps": len(plan.steps),
            "budget_bytes": budget, "budget": why, "sizes": sizes}
