r"""Fused latent search for one target: ``python -m jaxfair.search``.

  python -m jaxfair.search --config=configs/demo.py --target="tone=dark,hair=long" \
      --workdir=out/search --config.search.strategy=SNES

Writes accepted latents, their probabilities and a contact sheet (see jaxfair.search.job).
Bad input: one line on stderr, exit status 2, nothing written. A target never reached
within ``search.max_generations``: one line with the best probability per attribute, exit 1,
nothing written. Fewer accepted latents than ``search.num_accepted`` (but some): they are
written, one "short" line, exit status 3 (``SHORTFALL_STATUS``, as python -m
jaxfair.generate).
"""

from __future__ import annotations

import sys

from absl import flags, logging

from jaxfair import cli
from jaxfair.search import job, readout

PROG = "jaxfair.search"
SHORTFALL_STATUS = 3  # fewer found than asked for (jaxfair.generate's status for a shortfall)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: config.workdir "
                               "+ '/search').")
_TARGET = flags.DEFINE_string("target", None, "Target group, e.g. 'tone=dark,hair=long' "
                              "(default: config.search.target).")


def main(config):
    workdir = _WORKDIR.value or config.workdir + "/search"
    target = _TARGET.value if _TARGET.value is not None else config.search.target
    logging.info("devices: %s", cli.device_summary())
    logging.info("config:\n%s", config)
    with cli.reporting(PROG):
        try:
            summary = job.run(config, workdir, target, log=logging.info)
        except readout.TargetNotReached as e:  # not bad input: exit status 1, no "error:"
            print(f"{PROG}: {e}", file=sys.stderr)
            sys.exit(1)
    print(f"wrote {summary['num_accepted']} accepted latents for {summary['target']} to "
          f"{workdir} ({summary['candidates_evaluated']} candidates evaluated)")
    if summary["num_accepted"] < summary["num_requested"]:
        print(f"{PROG}: short: {summary['target']}: {summary['num_accepted']} of "
              f"{summary['num_requested']} found within search.max_generations "
              f"({summary['generations']} generations); rerun with a larger budget",
              file=sys.stderr)
        sys.exit(SHORTFALL_STATUS)


if __name__ == "__main__":
    cli.run(main, PROG, default_config="configs/demo.py")
