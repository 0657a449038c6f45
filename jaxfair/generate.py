r"""Main job: ``python -m jaxfair.generate`` (default config: configs/demo.py).

  python -m jaxfair.generate --config=configs/demo.py --config.num_images=256 --workdir=out/x

``config.method``: 'rejection' (balanced groups judged by the classifier; the default on
the demo world until the fused search lands) or 'unguided' (plain samples from the prior).
Bad input: one line on stderr, exit status 2, nothing written.
"""

from __future__ import annotations

from absl import flags, logging

from jaxfair import cli
from jaxfair.attributes import TargetError
from jaxfair.checkpoints import CheckpointDirError
from jaxfair.convert.torch_pickle import CheckpointError
from jaxfair.sampling import rejection, unguided

METHODS = {"rejection": rejection.run, "unguided": unguided.run}

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: config.workdir).")


def main(config):
    workdir = _WORKDIR.value or config.workdir
    logging.info("devices: %s", unguided.device_summary())
    logging.info("config:\n%s", config)
    if config.method not in METHODS:
        cli.fail("jaxfair.generate", f"unknown method {config.method!r}; choose from "
                 f"{', '.join(METHODS)}")
    try:
        summary = METHODS[config.method](config, workdir, log=logging.info)
    except (ValueError, FileExistsError, CheckpointError, CheckpointDirError,
            FileNotFoundError, TargetError, rejection.QuotaNotMet) as e:
        cli.fail("jaxfair.generate", e)
    print(f"wrote {summary['num_images']} images to {workdir}")


if __name__ == "__main__":
    cli.run(main, "jaxfair.generate", default_config="configs/demo.py")
