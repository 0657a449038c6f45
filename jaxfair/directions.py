r"""Fit W directions for classifier attributes: ``python -m jaxfair.directions``.

  python -m jaxfair.directions --config=configs/demo.py \
      --directions="glasses=yes:0.5" --num=4096 --out=checkpoints/demo/directions.npz

Samples ``--num`` latents from the prior, renders and classifies them, and for every
``attribute=class:scale`` fits a logistic regression in W (class vs the rest); the unit
normal of its boundary, pointing towards the class, is the direction (written with its
scale to a directions file for ``config.variations``, format in
jaxfair/pipeline/variations.py). Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

import jaxfair
from jaxfair import cli
from jaxfair.convert.torch_pickle import CheckpointError
from jaxfair.io.checkpoints import CheckpointDirError
from jaxfair.judge import attributes
from jaxfair.judge import render as rejection
from jaxfair.judge.attributes import TargetError
from jaxfair.pipeline import variations as var_lib
from jaxfair.search import spaces

_OUT = flags.DEFINE_string("out", None, "Directions file to write (.npz).", required=True)
_DIRECTIONS = flags.DEFINE_string("directions", "glasses=yes:0.5",
                                  "'attribute=class:scale;...' directions to fit.")
_NUM = flags.DEFINE_integer("num", 4096, "Prior samples labelled by the classifier.")
_MIN_CLASS = 20  # fewest samples on either side of a boundary worth fitting

PROG = "jaxfair.directions"


def parse(text: str, schema: attributes.Schema) -> list[tuple[str, str, float]]:
    """'attr=class:scale;...' -> [(attr, class, scale)] (validated against the schema)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        head, _, scale = part.partition(":")
        name, _, cls = head.partition("=")
        a = schema.attribute(name.strip())
        if cls.strip() not in a.classes:
            raise ValueError(f"unknown class {cls.strip()!r} of {a.name}; choose from "
                             f"{', '.join(a.classes)}")
        try:
            s = float(scale) if scale else 1.0
        except ValueError:
            raise ValueError(f"bad scale {scale!r} in {part!r}") from None
        var_lib.check_scale(s, f"--directions {part!r}")  # NaN and inf too
        out.append((a.name, cls.strip(), s))
    if not out:
        raise ValueError("--directions names no direction")
    return out


def fit(config, specs, num: int, log=logging.info) -> var_lib.Directions:
    """Labels ``num`` prior samples and fits one direction per spec."""
    G = jaxfair.load_generator(config.generator)
    C = jaxfair.load_classifier(config.classifier)
    specs = parse(specs, C.schema) if isinstance(specs, str) else specs
    root = jax.random.key(config.seed)
    prior = spaces.estimate_prior(G, jax.random.fold_in(root, 0))
    batch = min(num, config.render_batch)
    step = rejection.make_step(G, C, batch, config.truncation_psi, config.noise_mode)
    dummy = attributes.stack_targets([attributes.any_target(C.schema)])
    ws, probs = [], []
    for i in range(-(-num // batch)):
        _, w, _, p, _ = step(G.state, C.state, jax.random.fold_in(root, 1000 + i), dummy)
        ws.append(np.asarray(w[:, 0]))
        probs.append(jax.device_get(p))
    w = np.concatenate(ws)[:num]
    u = (jnp.asarray(w) - prior.w_avg) / prior.w_std
    names, vectors, scales = [], [], []
    for name, cls, scale in specs:
        a = C.schema.attribute(name)
        p = np.concatenate([q[name] for q in probs])[:num]
        labels = np.argmax(p, axis=1) == a.classes.index(cls)
        if min(labels.sum(), (~labels).sum()) < _MIN_CLASS:
            raise ValueError(f"{name}={cls}: {labels.sum()} of {num} samples are in the class; "
                             f"need at least {_MIN_CLASS} on each side (raise --num)")
        d, acc = var_lib.fit_direction(u, labels)
        log(f"{name}={cls}: {labels.sum()}/{num} samples in class, boundary accuracy {acc:.3f}")
        names.append(f"{name}={cls}")
        vectors.append(d)
        scales.append(scale)
    return var_lib.Directions(tuple(names), np.stack(vectors), np.asarray(scales, np.float32))


def main(config):
    if _NUM.value < 2 * _MIN_CLASS:
        cli.fail(PROG, f"--num must be >= {2 * _MIN_CLASS}, got {_NUM.value}")
    try:
        d = fit(config, _DIRECTIONS.value, _NUM.value)
        var_lib.save(_OUT.value, d)
    except (ValueError, TargetError, CheckpointError, CheckpointDirError, OSError) as e:
        cli.fail(PROG, e)
    print(f"wrote {len(d.names)} directions ({', '.join(d.names)}) to {_OUT.value}")


if __name__ == "__main__":
    cli.run(main, PROG, default_config="configs/demo.py")
