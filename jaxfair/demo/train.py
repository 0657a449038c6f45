r"""Trains the demo world's generator and classifier into checkpoints/demo.

  python -m jaxfair.demo.train --out=checkpoints/demo               # both, seed 0
  python -m jaxfair.demo.train --part=generator --out=/tmp/demo      # one part

Writes ``OUT/generator`` and ``OUT/classifier``: jaxfair checkpoint directories whose
meta.json records the command, machine, seed, settings, final loss and training time.
``python -m jaxfair.demo.evaluate`` then measures them. Deterministic given the seed (on one
machine: XLA's float reductions may differ across hardware).
"""

from __future__ import annotations

import os
import platform
import sys

import jax
from absl import flags, logging
from flax import nnx

from jaxfair import cli
from jaxfair.demo import fit_classifier, fit_generator
from jaxfair.io import checkpoints
from jaxfair.judge import preprocess as pp

_OUT = flags.DEFINE_string("out", "checkpoints/demo", "Output directory.")
_PART = flags.DEFINE_enum("part", "both", ["both", "generator", "classifier"], "What to train.")
_SEED = flags.DEFINE_integer("seed", 0, "Training seed.")
_G_STEPS = flags.DEFINE_integer("generator_steps", fit_generator.GeneratorFitConfig.steps,
                                "Generator training steps.")
_C_STEPS = flags.DEFINE_integer("classifier_steps", fit_classifier.ClassifierFitConfig.steps,
                                "Classifier training steps.")
_SAMPLES = flags.DEFINE_string("sample_sheet", None,
                               "Write a contact sheet of generator samples here while training.")


def _provenance() -> dict:
    return {"command": " ".join(["python -m jaxfair.demo.train"] + sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                       f"{jax.devices()[0].platform}"}


def train_generator(out: str) -> None:
    cfg = fit_generator.GeneratorFitConfig(seed=_SEED.value, steps=_G_STEPS.value)
    gcfg, state, record = fit_generator.fit(cfg, log=logging.info,
                                            sample_sheet=_SAMPLES.value)
    meta = {"kind": "stylegan2", "config": gcfg.to_dict(),
            "source": {"format": "jaxfair-demo", **_provenance(), **record}}
    checkpoints.save(os.path.join(out, "generator"), nnx.to_pure_dict(state), meta)


def train_classifier(out: str) -> None:
    cfg = fit_classifier.ClassifierFitConfig(seed=_SEED.value, steps=_C_STEPS.value)
    rcfg, _, state, record = fit_classifier.fit(cfg, log=logging.info)
    meta = {"kind": "resnet", "config": rcfg.to_dict(), "schema": "demo",
            "preprocess": pp.Preprocess.demo(cfg.image_size).to_dict(),
            "source": {"format": "jaxfair-demo", **_provenance(), **record}}
    checkpoints.save(os.path.join(out, "classifier"), nnx.to_pure_dict(state), meta)


def main():
    parts = {"both": ("generator", "classifier")}.get(_PART.value, (_PART.value,))
    try:
        for part in parts:
            checkpoints.check_output_dir(os.path.join(_OUT.value, part))
    except checkpoints.CheckpointDirError as e:
        cli.fail("jaxfair.demo.train", e)
    os.makedirs(_OUT.value, exist_ok=True)
    if "generator" in parts:
        train_generator(_OUT.value)
    if "classifier" in parts:
        train_classifier(_OUT.value)


if __name__ == "__main__":
    cli.run(main, "jaxfair.demo.train")
