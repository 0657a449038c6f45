r"""Fit W directions for classifier attributes: ``python -m jaxfair.directions``.

  python -m jaxfair.directions --config=configs/demo.py \
      --directions="glasses=yes:0.5" --num=4096 --out=checkpoints/demo/directions.npz

Samples ``--num`` latents from the prior, renders and classifies them, and for every
``attribute=class:scale`` fits a logistic regression in W (class vs the rest); the unit
normal of its boundary, pointing towards the class, is the direction (written with its
scale to a directions file for ``config.variations``; format and fit in
jaxfair/pipeline/variations.py). Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

from absl import flags, logging

from jaxfair import cli
from jaxfair.pipeline import variations as var_lib

_OUT = flags.DEFINE_string("out", None, "Directions file to write (.npz).", required=True)
_DIRECTIONS = flags.DEFINE_string("directions", "glasses=yes:0.5",
                                  "'attribute=class:scale;...' directions to fit.")
_NUM = flags.DEFINE_integer("num", 4096, "Prior samples labelled by the classifier.")

PROG = "jaxfair.directions"


def main(config):
    if _NUM.value < 2 * var_lib.MIN_CLASS:
        cli.fail(PROG, f"--num must be >= {2 * var_lib.MIN_CLASS}, got {_NUM.value}")
    with cli.reporting(PROG, os_error=str):
        d = var_lib.fit_directions(config, _DIRECTIONS.value, _NUM.value, log=logging.info)
        var_lib.save(_OUT.value, d)
    print(f"wrote {len(d.names)} directions ({', '.join(d.names)}) to {_OUT.value}")


if __name__ == "__main__":
    cli.run(main, PROG, default_config="configs/demo.py")
