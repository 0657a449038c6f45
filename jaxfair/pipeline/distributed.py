"""Multi-host runs: one process per host, ``jax.distributed``, barriers between phases.

On TPU pods and Slurm, ``jax.distributed.initialize()`` finds its peers by itself; elsewhere
(e.g. two processes on one machine) the coordinator address, process count and id are
given. Every process computes on its own local devices (``jax.local_devices()``) and writes
its own shards; nothing crosses hosts except these barriers.
"""

from __future__ import annotations

import jax
from jax.experimental import multihost_utils


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None) -> None:
    """``jax.distributed.initialize`` with explicit settings, or auto-detection when all
    three are None (TPU pods, Slurm)."""
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier ``name`` (no-op with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
