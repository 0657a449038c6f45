"""Bias audit of a generator: how its unguided samples split over the classifier's classes.

N latents are drawn from the prior with the convention of the render-and-classify step
(jaxfair.judge.render; batch b: ``kz, kn = split(keys.labels(root(seed), b))``,
z ~ N(0, I) from kz, kn for random noise; same truncation and noise mode), rendered and
classified on the device; only the probabilities leave it. The report gives, per attribute
and per combination of ``config.attributes`` (the groups a balanced dataset would have), the
share of samples (argmax class) with a 95% Wilson interval.

Output (``out``, written atomically): ``audit.json`` (numbers and settings), ``audit.png``
(bar chart), ``audit.txt`` (the terminal table).
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
from jaxfair.judge import attributes, render, sizing
from jaxfair.judge.classifier import Classifier
from jaxfair.models import stylegan2 as sg
from jaxfair.report import plots, stats, text


def classify_factory(G: sg.Generator, C: Classifier, batch_size: int, psi: float,
                     noise_mode: str):
    """``micro -> (jitted (g_state, c_state, key) -> {attribute: probabilities [B, K]},
    abstract arguments)``: B fresh prior samples through the prior stream's render-and-judge
    step (``judge.render.make_step``, ``micro`` at a time); images stay on the device."""
    no_groups = attributes.stack_targets([attributes.any_target(C.schema)])
    args = (sizing.abstract(G.state), sizing.abstract(C.state), jax.random.key(0))

    def factory(micro):
        step = render.make_step(G, C, batch_size, psi, noise_mode, micro)

        @jax.jit
        def classify(g_state, c_state, key):
            return step(g_state, c_state, key, no_groups)[3]  # XLA prunes unused outputs

        return classify, args

    return factory


def make_classify_fn(G: sg.Generator, C: Classifier, batch_size: int, psi: float,
                     noise_mode: str, budget_bytes: int | None = None,
                     log: Callable[[str], None] | None = None
                     ) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """``key -> {attribute: probabilities [B, K]}`` (``classify_factory``), in micro-batches
    within ``budget_bytes`` per call (``sizing.size_step``; random noise: whole batches) or
    whole batches (None)."""
    factory = classify_factory(G, C, batch_size, psi, noise_mode)
    if budget_bytes is None:
        classify = factory(batch_size)[0]
    else:
        classify = sizing.size_step(factory, budget_bytes, batch_size, "audit",
                                    allowed=(batch_size,) if noise_mode == "random" else None)
        if log is not None:
            log(f"audit step: batch {batch_size}, micro-batch {classify.batch} "
                f"({sizing.describe(classify.memory)})")
    return lambda key: classify(G.state, C.state, key)


def sample_labels(classify: Callable[[jax.Array], dict[str, jax.Array]], num: int,
                  batch_size: int, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """Argmax classes of ``num`` samples (batch b uses ``keys.labels(root(seed), b)``).

    Returns:
      ({attribute: int [num]} (the last batch trimmed), timing): timing holds 'seconds'
      (all of it), 'first_batch_seconds' (includes compilation) and 'samples_per_s' (the
      batches after the first; None with a single batch).
    """
    root = keylib.root(seed)
    out: dict[str, list[np.ndarray]] = {}
    start = time.perf_counter()
    first = None
    n_batches = -(-num // batch_size)
    for b in range(n_batches):
        for a, p in jax.device_get(classify(keylib.labels(root, b))).items():
            out.setdefault(a, []).append(np.argmax(p, axis=-1))
        if b == 0:
            first = time.perf_counter()
    end = time.perf_counter()
    rest = (n_batches - 1) * batch_size / (end - first) if n_batches > 1 else None
    timing = {"seconds": round(end - start, 3), "first_batch_seconds": round(first - start, 3),
              "samples_per_s": None if rest is None else round(rest, 1)}
    return {a: np.concatenate(v)[:num] for a, v in out.items()}, timing


def summarise(labels: dict[str, np.ndarray], schema: attributes.Schema,
              combine: tuple[str, ...]) -> dict:
    """Shares per attribute and per combination of ``combine`` attributes.

    Args:
      labels: {attribute: int class index [N]}.
      combine: attributes whose class combinations are the groups (config.attributes).

    Returns:
      {'attributes': {attr: {class: proportion}}, 'combinations': {group: proportion},
       'balanced_share': {attr: 1/K, ..., 'combinations': 1/G}}.
    """
    per_attr = {a.name: stats.proportions(labels[a.name], a.classes)
                for a in schema.attributes}
    combos = {}
    groups = attributes.enumerate_groups(schema, combine)
    n = len(next(iter(labels.values())))
    for name, _ in groups:
        mask = np.ones(n, bool)
        for term in name.split(","):
            attr, cls = term.split("=")
            mask &= labels[attr] == schema.attribute(attr).classes.index(cls)
        combos[name] = stats.share_of(mask)
    balanced = {a.name: 1.0 / a.size for a in schema.attributes}
    balanced["combinations"] = 1.0 / len(groups)
    return {"attributes": per_attr, "combinations": combos, "balanced_share": balanced}


def table(summary: dict) -> str:
    """The audit as a terminal table: one row per class and per combination."""
    rows = []
    for attr, classes in summary["attributes"].items():
        for cls, p in classes.items():
            rows.append([attr, cls, stats.percent(p), p["count"]])
    for group, p in summary["combinations"].items():
        rows.append(["(group)", group, stats.percent(p), p["count"]])
    return text.table(["attribute", "class", "share [95% CI]", "count"], rows)


def validate(config: ml_collections.ConfigDict, num: int, schema: attributes.Schema) -> None:
    """Raises ValueError naming the first bad setting (TargetError for attribute names)."""
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    if config.report.batch_size < 1:
        raise ValueError(f"report.batch_size must be >= 1, got {config.report.batch_size}")
    if config.noise_mode not in sg.NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {sg.NOISE_MODES}, got "
                         f"{config.noise_mode!r}")
    if not 0 <= config.truncation_psi <= 2:
        raise ValueError(f"truncation_psi must be in [0, 2], got {config.truncation_psi}")
    if not config.attributes:
        raise ValueError("attributes must name at least one classifier attribute")
    for name in config.attributes:
        schema.attribute(name)


def run(config: ml_collections.ConfigDict, out: str, num: int,
        log: Callable[[str], None] = print) -> dict:
    """Samples, classifies and writes the audit to ``out`` (absent or empty).

    Returns:
      The dict written to ``audit.json`` (plus ``table``, the terminal text).
    """
    atomic.check_empty(out, "output directory")
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    validate(config, num, C.schema)
    rc = config.report
    classify = make_classify_fn(G, C, rc.batch_size, config.truncation_psi, config.noise_mode,
                                sizing.budget_bytes(config.memory_budget_gb)[0], log)
    labels, timing = sample_labels(classify, num, rc.batch_size, rc.seed)
    log(f"classified {num} unguided samples in {timing['seconds']:.1f} s (first batch, with "
        f"compilation, {timing['first_batch_seconds']:.1f} s; then "
        f"{timing['samples_per_s']} samples/s)")
    summary = summarise(labels, C.schema, tuple(config.attributes))
    result = {"num": num, **timing, "seed": rc.seed,
              "batch_size": rc.batch_size, "truncation_psi": config.truncation_psi,
              "noise_mode": config.noise_mode, "generator": config.generator,
              "generator_source": G.meta.get("source", {}), "classifier": config.classifier,
              "classifier_source": C.meta.get("source", {}),
              "jaxfair_version": jaxfair.__version__, **summary}
    tab = table(summary)
    panels = {f"{a} (by classifier)": c for a, c in summary["attributes"].items()}
    combo_title = "groups: " + " x ".join(config.attributes)
    panels[combo_title] = summary["combinations"]
    reference = {f"{a} (by classifier)": s for a, s in summary["balanced_share"].items()}
    reference[combo_title] = summary["balanced_share"]["combinations"]
    png = plots.shares_with_ci(
        panels, f"Unguided samples of {config.generator}: n={num}, "
        f"psi={config.truncation_psi} (bars: 95% Wilson CI)", reference=reference,
        ylabel={**{p: "class" for p in panels}, combo_title: "group"})
    with atomic.directory(out, "output directory") as tmp:
        with open(os.path.join(tmp, "audit.json"), "w") as f:
            json.dump(result, f, indent=2)
        with open(os.path.join(tmp, "audit.txt"), "w") as f:
            f.write(tab + "\n")
        with open(os.path.join(tmp, "audit.png"), "wb") as f:
            f.write(png)
    return {**result, "table": tab}
