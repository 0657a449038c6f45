r"""Main job: ``python -m jaxfair.generate`` (default config: configs/demo.py).

  python -m jaxfair.generate --config=configs/demo.py --workdir=out/demo
  python -m jaxfair.generate --config=configs/demo.py:variations --config.image_format=jpg

Writes a balanced dataset (plan.json, shards/NNNNN/ with DONE markers, manifest.json; see
README "Dataset format") and resumes it when rerun on the same --workdir. Multi-host: pass
--distributed (TPU pods, Slurm: peers found automatically) or --coordinator_address,
--num_processes and --process_id. Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

from absl import flags, logging

from jaxfair import cli
from jaxfair.pipeline import distributed

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: config.workdir).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace a dataset made with other settings in --workdir.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "jax.distributed.initialize() with auto-detected peers.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multi-host without auto-detect).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")

PROG = "jaxfair.generate"


def main(config):
    workdir = _WORKDIR.value or config.workdir
    if _DISTRIBUTED.value or _COORDINATOR.value:
        # Before anything touches a JAX backend (importing evosax does).
        distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    from jaxfair.pipeline import run as pipeline

    # An unwritable directory or a full disk: finished shards stay intact.
    with cli.reporting(PROG, os_error=lambda e: f"cannot write to {workdir}: {e}; finished "
                       "shards are intact, rerun the same command to resume"):
        summary = pipeline.run(config, workdir, _OVERWRITE.value, log=logging.info)
    if "counts" in summary:
        print(f"wrote {summary['images']} images of {summary['identities']} identities in "
              f"{len(summary['counts'])} groups to {workdir}")


if __name__ == "__main__":
    cli.run(main, PROG, default_config="configs/demo.py")
