"""The host loop shared by the demo fits: jitted steps, periodic logging, no per-step sync."""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import numpy as np


def train(step: Callable, params, opt_state, key: jax.Array, steps: int, log_every: int,
          log: Callable[[str], None], name: str, on_log: Callable | None = None):
    """Runs ``params, opt_state, loss = step(params, opt_state, fold_in(key, i))`` for i < steps.

    Losses stay on device until a log line needs their mean, so steps are dispatched back to
    back. ``on_log(params)`` runs after each log line (e.g. to write a sample sheet).

    Returns:
      (params, opt_state, mean loss of the last ``log_every`` steps, seconds).
    """
    start = time.time()
    losses = []
    recent = float("nan")
    for i in range(steps):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, i))
        losses.append(loss)
        if (i + 1) % log_every == 0 or i + 1 == steps:
            recent = float(np.mean(np.asarray(losses[-log_every:])))
            log(f"{name} step {i + 1}/{steps}  loss {recent:.5f}  {time.time() - start:.0f}s")
            if on_log is not None:
                on_log(params)
    return params, opt_state, recent, time.time() - start
