"""Drawing from a fitted distribution model: ``python -m jaxfair.sample draw``.

Codes from a group's mixture -> decode to w -> broadcast to every layer (W, not W+) ->
render -> classify, one jitted step for every group (mixture and target are arguments, so
it compiles once). With ``verify`` only samples whose group mass meets the fit's threshold
are kept, drawing more until the count is met. Purity is judged by the classifier here; a
decoded w has no exact ground truth (on the demo world only a z has): ``distribution_eval``
labels it by projection onto the generator's W surface (``ground_truth``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxfair
from jaxfair import identity
from jaxfair import keys as keylib
from jaxfair.dataset import format as fmt
from jaxfair.distribution import gmm as gmmlib
from jaxfair.distribution.fit import Fitted, load
from jaxfair.io import atomic
from jaxfair.io import images as imlib
from jaxfair.judge import attributes, render, sizing
from jaxfair.judge.classifier import Classifier
from jaxfair.models import autoencoder as ae
from jaxfair.models import stylegan2 as sg
from jaxfair.search import spaces

# Draws of one command, all groups together: draw holds every kept image in memory until
# it writes them (bulk datasets are generate's job, shard by shard on disk).
MAX_DRAW = 100_000
# ... and at most this many bytes of them (uint8 RGB at the generator's resolution).
MAX_DRAW_BYTES = 16 << 30


def split_counts(text: str) -> list[tuple[str, int]]:
    """``"tone=dark,hair=long:100;tone=light,hair=short:5"`` -> [(target text, count)].

    Checked before any model loads: syntax, each count >= 1, their sum <= ``MAX_DRAW``.
    """
    out = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        target_text, sep, count = part.rpartition(":")
        if not sep or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"bad count {part[:200]!r}: expected target:count with count >= 1, "
                             "e.g. 'tone=dark,hair=long:100'")
        out.append((target_text, int(count)))
    if not out:
        raise ValueError("counts name no group, e.g. 'tone=dark,hair=long:100'")
    total = sum(c for _, c in out)
    if total > MAX_DRAW:
        raise ValueError(f"counts ask for {total} samples, more than the limit of {MAX_DRAW} "
                         f"per draw (kept in memory); use python -m jaxfair.generate "
                         f"--config.method=distribution for bulk datasets")
    return out


def parse_counts(text: str, schema: attributes.Schema, groups: tuple[str, ...]
                 ) -> list[tuple[int, int]]:
    """``"tone=dark,hair=long:100;tone=light,hair=short:5"`` -> [(group index, count)].

    Raises:
      ValueError: malformed text, a count < 1, too many in all (``split_counts``), or a
        group the fit has no mixture for.
    """
    return [(group_index(t, schema, groups), c) for t, c in split_counts(text)]


def group_index(text: str, schema: attributes.Schema, groups: tuple[str, ...]) -> int:
    """Index of the fitted group that target ``text`` names (any spelling of it).

    Raises:
      ValueError: (TargetError) bad target, or no mixture was fitted for it.
    """
    name = attributes.format_target(attributes.parse_target(text, schema), schema)
    if name not in groups:
        raise ValueError(f"no model for group {name!r}; fitted groups: {', '.join(groups)}"
                         " (add it to distribution.extra_groups and fit again)")
    return groups.index(name)


def make_draw_step(G: sg.Generator, C: Classifier, graphdef: nnx.GraphDef, batch_size: int,
                   noise_mode: str, micro: int = 0):
    """Jitted ``(g_state, c_state, ae_state, mixture, target, key) -> (w, uint8 images,
    probs, group mass [B], argmax-in-group [B])``; one compile serves every group.
    ``micro`` (< B, not with random noise): render and classify this many at a time
    (``render.chunked``: the same draws)."""
    if noise_mode == "random" and 0 < micro < batch_size:
        raise ValueError("micro-batches need noise_mode const or none")

    @jax.jit
    def step(g_state, c_state, ae_state, mixture, target, key):
        kc, kn = jax.random.split(key)
        w = ae.decode(graphdef, ae_state, gmmlib.sample(kc, mixture, batch_size))

        def rows(w):
            ws = jnp.broadcast_to(w[:, None], (w.shape[0], G.config.num_ws, G.config.w_dim))
            img, probs, _ = render.judge(G.graphdef, g_state, C.graphdef, c_state,
                                         C.preprocess, C.schema, ws, noise_mode, kn)
            return imlib.to_uint8(img), probs

        img, probs = render.chunked(rows, w, micro)
        mass = render.group_masses(probs, attributes.stack_targets([target]))[0]
        return w, img, probs, mass, attributes.in_target(probs, target)

    return step


def draw_factory(G: sg.Generator, C: Classifier, fitted: Fitted, batch_size: int,
                 noise_mode: str):
    """``micro -> (make_draw_step(..., micro), abstract arguments)`` for
    ``sizing.size_step``."""
    args = (sizing.abstract(G.state), sizing.abstract(C.state),
            sizing.abstract(fitted.ae_state),
            sizing.abstract(gmmlib.select(fitted.mixtures, 0)),
            sizing.abstract(attributes.parse_target(fitted.groups[0], C.schema)),
            jax.random.key(0))

    def factory(micro):
        return make_draw_step(G, C, fitted.ae_graphdef, batch_size, noise_mode, micro), args

    return factory


@dataclasses.dataclass(frozen=True)
class Sampler:
    """A loaded model with its compiled draw step (``sampler``), reusable across draws."""

    workdir: str
    fitted: Fitted
    G: sg.Generator
    C: Classifier
    step: Callable
    batch_size: int


def sampler(workdir: str, batch_size: int, budget_bytes: int | None = None) -> Sampler:
    """Loads the model in ``workdir``, its generator and classifier, and builds the step:
    within ``budget_bytes`` per call (micro-batches, ``sizing.size_step``; random noise
    runs whole batches), or as configured (None)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fitted = load(workdir)
    meta = fitted.meta
    G = jaxfair.load_generator(meta["generator"])
    C = jaxfair.load_classifier(meta["classifier"])
    if G.config.w_dim != fitted.ae_config.w_dim:
        raise ValueError(f"generator {meta['generator']} has w_dim {G.config.w_dim}, the "
                         f"autoencoder in {workdir} expects {fitted.ae_config.w_dim}")
    factory = draw_factory(G, C, fitted, batch_size, meta["noise_mode"])
    step = (factory(batch_size)[0] if budget_bytes is None else sizing.size_step(
        factory, budget_bytes, batch_size, "draw",
        allowed=(batch_size,) if meta["noise_mode"] == "random" else None))
    return Sampler(workdir, fitted, G, C, step, batch_size)


def compile_step(s: Sampler) -> float:
    """Compiles the draw step on one discarded batch (so that samples/s of every later
    draw is steady-state); returns the seconds it took."""
    start = time.time()
    jax.block_until_ready(s.step(s.G.state, s.C.state, s.fitted.ae_state,
                                 gmmlib.select(s.fitted.mixtures, 0),
                                 attributes.parse_target(s.fitted.groups[0], s.C.schema),
                                 jax.random.key(0)))
    return time.time() - start


def draw_groups(s: Sampler, plan: list[tuple[int, int]], verify: bool, seed: int,
                max_draw_factor: float, identity_radius: float,
                log: Callable[[str], None] = print) -> tuple[list[tuple], dict]:
    """Draws ``plan`` [(group index, count)] (see ``draw``).

    Batch b of group g uses key ``keys.draws(root(seed), g, b)`` whether verified or not, so
    the verified samples are exactly the passing ones of the unverified stream.

    Returns:
      (kept items (group, w, uint8 image, probs, mass, argmax hit), per-group stats).
    """
    threshold = s.fitted.meta["threshold"]
    root = keylib.root(seed)
    prior = spaces.estimate_prior(s.G, keylib.prior(root))  # the identity unit
    kept, stats = [], {}
    for g, count in plan:
        name = s.fitted.groups[g]
        target = attributes.parse_target(name, s.C.schema)
        mixture = gmmlib.select(s.fitted.mixtures, g)
        items, drawn, pure, argmax_pure = [], 0, 0, 0
        start = time.time()
        b = 0
        while len(items) < count:
            if drawn >= max_draw_factor * count:
                raise ValueError(f"group {name}: only {len(items)} of {count} samples met "
                                 f"threshold {threshold} after {drawn} draws "
                                 f"(max_draw_factor {max_draw_factor})")
            w, img, probs, mass, hit = jax.device_get(s.step(
                s.G.state, s.C.state, s.fitted.ae_state, mixture, target,
                keylib.draws(root, g, b)))
            ok = mass >= threshold
            n = s.batch_size if verify else min(s.batch_size, count - len(items))
            drawn, pure, argmax_pure = drawn + n, pure + int(ok[:n].sum()), \
                argmax_pure + int(hit[:n].sum())
            take = np.flatnonzero(ok) if verify else np.arange(n)
            for i in take[:count - len(items)]:
                items.append((name, w[i], img[i], {a: p[i] for a, p in probs.items()},
                              float(mass[i]), bool(hit[i])))
            b += 1
        seconds = time.time() - start
        stats[name] = {
            "count": count, "drawn": drawn,
            "purity_before": round(pure / drawn, 4),
            "argmax_purity_before": round(argmax_pure / drawn, 4),
            "purity_after": round(float(np.mean([it[4] >= threshold for it in items])), 4),
            "argmax_purity_after": round(float(np.mean([it[5] for it in items])), 4),
            "distinct_share": round(identity.distinct_share(identity.to_prior_units(
                np.stack([it[1] for it in items]), prior.w_avg, prior.w_std), identity_radius), 4),
            "samples_per_s": round(count / seconds, 1), "seconds": round(seconds, 2)}
        log(f"{name}: {stats[name]}")
        kept.extend(items)
    return kept, stats


def draw(workdir: str, counts: str, out: str, verify: bool, batch_size: int, seed: int,
         max_draw_factor: float, image_format: str = "png", identity_radius: float = 0.05,
         log: Callable[[str], None] = print, memory_budget_gb: float = 0.0) -> dict:
    """Draws ``counts`` faces from the fitted model in ``workdir`` and writes them to ``out``.

    Output (``out``, atomic): ``images/<group>/<k>.<fmt>`` (unless image_format 'none'),
    ``ws.npy`` (float32 [num_images, w_dim], row i = records line i), ``records.jsonl``,
    ``summary.json`` (per group: drawn, kept, purity before/after, samples/s).

    Purity = share of samples whose group mass (classifier) is >= the fit's threshold;
    ``argmax_purity`` = share whose most likely class is in the group for every attribute;
    ``distinct_share`` = share of kept samples that are not the same identity as an earlier
    kept sample of the group (``jaxfair.identity``: farther than ``identity_radius``, prior
    units).
    """
    if image_format not in (*imlib.FORMATS, "none"):
        raise ValueError(f"image_format must be one of {(*imlib.FORMATS, 'none')}, got "
                         f"{image_format!r}")
    atomic.check_empty(out, "output directory")
    split_counts(counts)  # bad counts fail before the models load
    s = sampler(workdir, batch_size, sizing.budget_bytes(memory_budget_gb)[0])
    if isinstance(s.step, sizing.Sized):
        log(f"draw step: batch {batch_size}, micro-batch {s.step.batch} "
            f"({sizing.describe(s.step.memory)})")
    plan = parse_counts(counts, s.C.schema, s.fitted.groups)
    held = sum(c for _, c in plan) * 3 * s.G.config.img_resolution ** 2
    if held > MAX_DRAW_BYTES:
        raise ValueError(f"counts ask for {held / 2**30:.1f} GiB of images, more than the "
                         f"limit of {MAX_DRAW_BYTES >> 30} GiB per draw (kept in memory)")
    compile_seconds = compile_step(s)
    kept, stats = draw_groups(s, plan, verify, seed, max_draw_factor, identity_radius, log)
    summary = {"method": "distribution", "verify": verify,
               "threshold": s.fitted.meta["threshold"],
               "identity_radius": identity_radius,
               "compile_seconds": round(compile_seconds, 2),
               "num_images": len(kept), "groups": stats, "model": workdir, "seed": seed,
               "purity_judge": "classifier (ground truth on the demo world: "
                               "python -m jaxfair.lab evaluate)",
               "jaxfair_version": jaxfair.__version__}
    _write(out, kept, s.C.schema, image_format, summary)
    return summary


def _write(out, kept, schema, image_format, summary) -> None:
    with atomic.directory(out, "output directory") as tmp:
        records, per_group = [], {}
        for name, _w, img, probs, mass, _ in kept:
            k = per_group.get(name, 0)
            per_group[name] = k + 1
            file = None
            if image_format != "none":
                folder = fmt.slug(name)
                os.makedirs(os.path.join(tmp, "images", folder), exist_ok=True)
                file = os.path.join("images", folder, f"{k}.{image_format}")
                with open(os.path.join(tmp, file), "wb") as f:
                    f.write(imlib.encode(img, image_format))
            pred = {a: {"class": schema.attribute(a).classes[int(np.argmax(p))],
                        "prob": round(float(np.max(p)), 5)} for a, p in probs.items()}
            records.append({"id": len(records), "group": name, "file": file,
                            "ws_row": len(records), "group_mass": round(mass, 5),
                            "pred": pred})
        np.save(os.path.join(tmp, "ws.npy"), np.stack([it[1] for it in kept]).astype(np.float32))
        with open(os.path.join(tmp, "records.jsonl"), "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        with open(os.path.join(tmp, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
