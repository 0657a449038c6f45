r"""Fused latent search for one target: ``python -m jaxfair.search``.

  python -m jaxfair.search --config=configs/demo.py --target="tone=dark,hair=long" \
      --workdir=out/search --config.search.strategy=SNES

Writes accepted latents, their probabilities and a contact sheet (see jaxfair.search.job).
Bad input: one line on stderr, exit status 2, nothing written. A target never reached
within ``search.max_generations``: one line with the best probability per attribute, exit 1.
"""

from __future__ import annotations

import sys

from absl import flags, logging

from jaxfair import cli
from jaxfair.search import job, readout

PROG = "jaxfair.search"
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


if __name__ == "__main__":
    cli.run(main, PROG, default_config="configs/demo.py")
