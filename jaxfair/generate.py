r"""Main job: ``python -m jaxfair.generate`` (default config: configs/demo.py).

  python -m jaxfair.generate --config=configs/demo.py --workdir=out/demo
  python -m jaxfair.generate --config=configs/demo.py:variations --config.image_format=jpg
  python -m jaxfair.generate --config=configs/ffhq1024_fairface.py --dry_run

Writes a balanced dataset (plan.json, shards/NNNNN/ with DONE markers, manifest.json; see
README "Dataset format") and resumes it when rerun on the same --workdir. Multi-host: pass
--distributed (TPU pods, Slurm: peers found automatically) or --coordinator_address,
--num_processes and --process_id. ``--dry_run`` prints the plan and the batch and compiled
memory of every step (jaxfair.pipeline.dry_run) and writes nothing. Bad input: one line on
stderr, exit status 2.
"""

from __future__ import annotations

import sys

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
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the plan, the batch sizes within the "
                             "memory budget and each step's compiled memory; write nothing.")

PROG = "jaxfair.generate"
# Exit status when the budget ran out with some group short of its quota (every reachable
# group finished, manifest.json lists the shortfall); 2 is bad input.
SHORTFALL_STATUS = 3


def main(config):
    workdir = _WORKDIR.value or config.workdir
    if _DISTRIBUTED.value or _COORDINATOR.value:
        # Before anything touches a JAX backend (importing evosax does).
        distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    from jaxfair.pipeline import run as pipeline

    # An unwritable directory or a full disk: finished shards stay intact.
    with cli.reporting(PROG, os_error=lambda e: f"cannot write to {workdir}: {e}; finished "
                       "shards are intact, rerun the same command to resume"):
        if _DRY_RUN.value:
            from jaxfair.pipeline import dry_run

            dry_run.run(config, log=print)
            return
        summary = pipeline.run(config, workdir, _OVERWRITE.value, log=logging.info)
    if "counts" in summary:
        print(f"wrote {summary['images']} images of {summary['identities']} identities in "
              f"{len(summary['counts'])} groups to {workdir}")
    if summary.get("shortfall"):
        for group, s in summary["shortfall"].items():
            print(f"{PROG}: short: {group}: {s['identities']} identities, {s['missing']} "
                  f"missing (best target probabilities {s['best_target_probs']}); rerun with "
                  f"a larger budget to resume", file=sys.stderr)
        sys.exit(SHORTFALL_STATUS)


if __name__ == "__main__":
    cli.run(main, PROG, default_config="configs/demo.py")
