"""Measures the demo world's models: classifier accuracy, generator bias and label agreement.

All numbers come from fresh samples with fixed seeds distinct from the training seeds, so
they are reproducible and held out.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair.demo import draw, fit_generator, world
from jaxfair.io import atomic
from jaxfair.io import images as imlib
from jaxfair.judge.classifier import Classifier
from jaxfair.models.stylegan2 import Generator

EVAL_SEED = 10_000  # training uses seeds 0, 1, ...


def _batched(fn, n: int, batch: int):
    """Concatenates fn(batch_index) -> dict/array results over ceil(n / batch) batches."""
    outs = [fn(b) for b in range(-(-n // batch))]
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outs)


def classifier_accuracy(C: Classifier, n: int = 5000, batch: int = 500,
                        seed: int = EVAL_SEED) -> dict[str, float]:
    """Per-attribute accuracy of ``C`` on n held-out world renders."""
    key = jax.random.key(seed)
    size = C.preprocess.size

    def one(b):
        images, labels = draw.sample(jax.random.fold_in(key, b), batch, size)
        probs = C.predict(images)
        return {a: (np.argmax(np.asarray(probs[a]), -1), np.asarray(labels[a])) for a in probs}

    res = _batched(one, n, batch)
    return {a: float(np.mean(pred == true)) for a, (pred, true) in res.items()}


def sample_generator(G: Generator, C: Classifier, n: int = 5000, batch: int = 250,
                     seed: int = EVAL_SEED + 1) -> dict[str, np.ndarray]:
    """n unguided samples: z, uint8 images, classifier labels and ground-truth labels."""
    key = jax.random.key(seed)

    def one(b):
        z = jax.random.normal(jax.random.fold_in(key, b), (batch, G.config.z_dim))
        img = G(z)
        probs = C.predict(img)
        out = {"z": np.asarray(z), "images": np.asarray(imlib.to_uint8(img))}
        for a, p in probs.items():
            out[f"pred_{a}"] = np.argmax(np.asarray(p), -1)
        for a, t in fit_generator.labels_from_latent(z).items():
            out[f"true_{a}"] = np.asarray(t)
        return out

    return _batched(one, n, batch)


def generator_report(samples: dict[str, np.ndarray]) -> dict:
    """Class distributions (classifier and ground truth) and their agreement, per attribute."""
    report = {}
    for a, classes in world.SCHEMA.items():
        pred, true = samples[f"pred_{a}"], samples[f"true_{a}"]
        k = len(classes)
        report[a] = {
            "classifier_distribution": dict(zip(classes, np.bincount(pred, minlength=k)
                                                / len(pred))),
            "ground_truth_distribution": dict(zip(classes, np.bincount(true, minlength=k)
                                                  / len(true))),
            "world_distribution": dict(zip(classes, world.BIAS[a])),
            "agreement": float(np.mean(pred == true)),
        }
    return report


def group_sheets(samples: dict[str, np.ndarray], per_group: int = 16
                 ) -> dict[str, np.ndarray]:
    """One uint8 contact sheet per (tone, hair, glasses) group, by classifier label."""
    sheets = {}
    names = list(world.SCHEMA)
    for combo in itertools.product(*(range(len(c)) for c in world.SCHEMA.values())):
        mask = np.ones(len(samples["z"]), bool)
        for a, c in zip(names, combo):
            mask &= samples[f"pred_{a}"] == c
        picked = samples["images"][mask][:per_group]
        name = "_".join(f"{a}={world.SCHEMA[a][c]}" for a, c in zip(names, combo))
        if len(picked):
            sheets[name] = imlib.contact_sheet(picked, cols=8)
    return sheets


def unguided_sheet(samples: dict[str, np.ndarray], n: int = 64) -> np.ndarray:
    return imlib.contact_sheet(samples["images"][:n], cols=16)


def ground_truth_fraction_in_blend(z: jnp.ndarray) -> float:
    """Fraction of latents whose world factors fall in a blend zone (label ambiguous)."""
    return float(jnp.mean(world.in_blend_zone(fit_generator.factors_from_latent(z))))


def main():
    """``python -m jaxfair.demo.evaluate --demo=checkpoints/demo``: writes DEMO/report.json
    and DEMO/sheets/*.png (unguided samples, one sheet per classifier-labelled group)."""
    import json
    import os
    import time

    from absl import flags, logging

    import jaxfair

    demo = flags.FLAGS.demo
    start = time.time()
    G = jaxfair.load_generator(os.path.join(demo, "generator"))
    C = jaxfair.load_classifier(os.path.join(demo, "classifier"))
    acc = classifier_accuracy(C, flags.FLAGS.n)
    logging.info("classifier accuracy on %d renders: %s", flags.FLAGS.n, acc)
    samples = sample_generator(G, C, flags.FLAGS.n)
    report = {"n": flags.FLAGS.n, "classifier_accuracy_on_renders": acc,
              "generator": generator_report(samples),
              "latents_in_blend_zone": ground_truth_fraction_in_blend(jnp.asarray(samples["z"])),
              "seconds": round(time.time() - start, 1)}
    logging.info("generator: %s", json.dumps(report["generator"], indent=1))
    sheets = os.path.join(demo, "sheets")
    os.makedirs(sheets, exist_ok=True)
    with open(os.path.join(sheets, "unguided.png"), "wb") as f:
        f.write(imlib.encode(unguided_sheet(samples)))
    for name, sheet in group_sheets(samples).items():
        with open(os.path.join(sheets, f"{name}.png"), "wb") as f:
            f.write(imlib.encode(sheet))
    with atomic.file(os.path.join(demo, "report.json")) as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    from absl import flags

    from jaxfair import cli

    flags.DEFINE_string("demo", "checkpoints/demo", "Directory with generator/ and classifier/.")
    flags.DEFINE_integer("n", 5000, "Samples for each measurement.")
    cli.run(main, "jaxfair.demo.evaluate")
