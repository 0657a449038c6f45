r"""Throughput benchmark of the fused search: ``python -m jaxfair.benchmark``.

  python -m jaxfair.benchmark --config=configs/demo.py --out=out/benchmark.json
  python -m jaxfair.benchmark --preset=ffhq256 --config.search.num_searches=2 \
      --config.search.population_size=4 --config.search.generations_per_chunk=2

Fused engine vs the same engine one generation per call vs the original batch-1 loop, on
one model, device and population (``config.search``), interleaved; FLOP per candidate and
the matmul peak of this device (jaxfair.search.bench). ``--preset=ffhq256|ffhq1024`` uses
random-weight models of the real architectures (rows for candidates/s and FLOP only).
Prints a table and writes JSON. Bad input: one line on stderr, exit status 2.
"""

from __future__ import annotations

import json
import os

from absl import flags

from jaxfair import cli
from jaxfair.search import bench

PROG = "jaxfair.benchmark"

_OUT = flags.DEFINE_string("out", None, "Write the results as JSON here.")
_CHUNKS = flags.DEFINE_integer("chunks", 3, "Timed steady-state chunks of the fused engine "
                               "(and as many interleaved slices of the other modes).")
_BATCH1_SECONDS = flags.DEFINE_float("batch1_seconds", 20.0,
                                     "Wall time given to the batch-1 original loop.")
_PRESET = flags.DEFINE_enum("preset", None, list(bench.PRESETS),
                            "Random-weight FFHQ generator + ResNet-34 FairFace classifier "
                            "instead of the config's checkpoints.")
_TARGET = flags.DEFINE_string("target", None, "Target group (default: config.search.target; "
                              "with --preset: race=black,gender=female).")


def main(config):
    with cli.reporting(PROG):
        result = bench.measure(config, _CHUNKS.value, _BATCH1_SECONDS.value, _PRESET.value,
                               _TARGET.value)
    print("\n".join(bench.summary_lines(result)))
    if _OUT.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    cli.run(main, PROG, default_config="configs/demo.py")
