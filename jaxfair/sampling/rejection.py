"""Balanced sampling by rejection: draw from the prior, keep what the classifier puts in a
group that still needs faces, until every group has its quota.

The simplest balanced baseline (and the default job on the demo world until the fused
search lands). Each batch is one compiled generate + classify step; group membership is
computed for all groups at once from the stacked targets (arrays, not Python), so the step
never recompiles. A sample joins group g when, for every attribute g constrains, the
classifier's probability of g's classes is >= ``threshold`` (> 0.5 makes groups disjoint).

Output (``workdir``, written to a temporary directory and renamed when complete):
  images/<group>/<k>.<fmt>   the accepted faces, k = 0 .. quota-1 per group
  latents.npy                float32 z [num_images, z_dim], row i = records line i
  records.jsonl              one JSON object per image: id, group, file, latent_row,
                             per-attribute predicted class and probability, batch, seed
  summary.json               counts and acceptance rate per group, settings, sources
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import jaxfair
from jaxfair import atomic, attributes
from jaxfair import images as imlib
from jaxfair.classifier import Classifier
from jaxfair.classifier import predict as classifier_predict
from jaxfair.models import stylegan2 as sg


class QuotaNotMet(RuntimeError):
    """max_samples were drawn and some group is still short of its quota."""


def group_masses(probs: dict[str, jax.Array], targets: attributes.Target) -> jax.Array:
    """Smallest per-attribute target probability, for every group: [G, N].

    Args:
      probs: {attribute: [N, K]} classifier probabilities.
      targets: G stacked targets (masks [G, K]).
    """
    def one(target):
        mass = attributes.target_mass(probs, target)
        return jnp.min(jnp.stack(list(mass.values())), axis=0)

    return jax.vmap(one)(targets)


def make_step(G: sg.Generator, C: Classifier, batch_size: int, psi: float, noise_mode: str):
    """Jitted ``(g_state, c_state, key, targets) -> (z, ws, uint8 images, probs, masses [G, B])``.

    ``ws`` [B, num_ws, w_dim] is returned for callers that keep W (the distribution method's
    labelling); unused outputs are pruned by XLA when the step is called inside another jit.
    """

    @jax.jit
    def step(g_state, c_state, key, targets):
        kz, kn = jax.random.split(key)
        z = jax.random.normal(kz, (batch_size, G.config.z_dim))
        ws = sg.mapping(G.graphdef, g_state, z, psi)
        img = sg.synthesis(G.graphdef, g_state, ws, noise_mode,
                           kn if noise_mode == "random" else None)
        probs = classifier_predict(C.graphdef, c_state, img, C.preprocess, C.schema)
        return z, ws, imlib.to_uint8(img), probs, group_masses(probs, targets)

    return step


def validate(config: ml_collections.ConfigDict, schema: attributes.Schema) -> None:
    if config.per_group < 1:
        raise ValueError(f"per_group must be >= 1, got {config.per_group}")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    if not 0.5 < config.threshold <= 1:
        raise ValueError(f"threshold must be in (0.5, 1], got {config.threshold}")
    if config.image_format not in (*imlib.FORMATS, "none"):
        raise ValueError(f"image_format must be one of {(*imlib.FORMATS, 'none')}, got "
                         f"{config.image_format!r}")
    if not config.attributes:
        raise ValueError("attributes must name at least one classifier attribute")
    for name in config.attributes:
        schema.attribute(name)  # raises TargetError listing the valid names


def run(config: ml_collections.ConfigDict, workdir: str,
        log: Callable[[str], None] = print) -> dict:
    """Fills ``config.per_group`` faces for every group of ``config.attributes``."""
    atomic.check_empty(workdir, "workdir")
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    validate(config, C.schema)
    groups = attributes.enumerate_groups(C.schema, tuple(config.attributes))
    names = [text.replace(",", "_") for text, _ in groups]
    targets = attributes.stack_targets([t for _, t in groups])
    step = make_step(G, C, config.batch_size, config.truncation_psi, config.noise_mode)
    quota = config.per_group
    kept: list[list[tuple]] = [[] for _ in groups]
    seen = 0
    key = jax.random.key(config.seed)
    b = 0
    while min(len(k) for k in kept) < quota:
        if seen >= config.max_samples:
            short = {n: len(k) for n, k in zip(names, kept) if len(k) < quota}
            raise QuotaNotMet(f"gave up after {seen} samples (max_samples); groups short of "
                               f"{quota}: {short}")
        z, _ws, img, probs, masses = step(G.state, C.state, jax.random.fold_in(key, b), targets)
        z, img, probs, masses = jax.device_get((z, img, probs, masses))  # ws stays on device
        member = masses >= config.threshold  # [G, B]
        for g in range(len(groups)):
            for i in np.flatnonzero(member[g])[:quota - len(kept[g])]:
                kept[g].append((z[i], img[i], {a: p[i] for a, p in probs.items()}, b))
        seen += config.batch_size
        b += 1
        if b % 10 == 0 or min(len(k) for k in kept) >= quota:
            log(f"{seen} samples: " + ", ".join(f"{n} {len(k)}" for n, k in zip(names, kept)))
    return _write(config, workdir, G, C, names, kept, seen)


def _write(config, workdir, G, C, names, kept, seen) -> dict:
    with atomic.directory(workdir, "workdir") as tmp:
        latents, records = [], []
        for name, items in zip(names, kept):
            if config.image_format != "none":
                os.makedirs(os.path.join(tmp, "images", name))
            for k, (z, img, probs, batch) in enumerate(items):
                file = None
                if config.image_format != "none":
                    file = os.path.join("images", name, f"{k}.{config.image_format}")
                    with open(os.path.join(tmp, file), "wb") as f:
                        f.write(imlib.encode(img, config.image_format))
                pred = {a: {"class": C.schema.attribute(a).classes[int(np.argmax(p))],
                            "prob": round(float(np.max(p)), 5)} for a, p in probs.items()}
                records.append({"id": len(records), "group": name, "file": file,
                                "latent_row": len(latents), "pred": pred, "batch": batch,
                                "seed": config.seed})
                latents.append(z)
        np.save(os.path.join(tmp, "latents.npy"), np.stack(latents).astype(np.float32))
        with open(os.path.join(tmp, "records.jsonl"), "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        summary = {
            "method": "rejection", "num_images": len(records), "samples_drawn": seen,
            "groups": {n: {"count": len(k)} for n, k in zip(names, kept)},
            "generator": config.generator, "generator_source": G.meta.get("source", {}),
            "classifier": config.classifier, "classifier_source": C.meta.get("source", {}),
            "jaxfair_version": jaxfair.__version__, "config": json.loads(config.to_json())}
        with open(os.path.join(tmp, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary
