"""Both sides of every "% of peak": XLA's FLOP count of a compiled function
(``compiled_flops``) and this device's measured float32 matmul rate (``matmul_rates``).

One definition for ``python -m jaxfair.benchmark`` and ``python -m jaxfair.peer``. A square
float32 ``a @ b`` is timed at each size in ``SIZES`` over back-to-back calls of about
``seconds`` in all (dispatch overlapped, one wait at the end); the peak is the best rate over
sizes. On the idle 2-core development CPU every size from 512 to 4096 ran at 58-66 GFLOP/s
(docs/performance.md); what moves the reading is the load, so callers take the best of
several measurements interleaved with their own.

Example:
  >>> rates = matmul_rates()          # {1024: 66.1, 2048: 58.3} GFLOP/s
  >>> peak = max(rates.values())
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

SIZES = (1024, 2048)


def compiled_flops(f, *args) -> float:
    """XLA's cost-analysis FLOP count of ``jax.jit(f)`` compiled for ``args`` (arrays or
    ``jax.ShapeDtypeStruct``s): compiled, not run. An already jitted ``f`` is lowered as
    it is, so its later calls reuse this compilation (wrapping it again would not)."""
    jitted = f if hasattr(f, "lower") else jax.jit(f)
    cost = jitted.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])


def matmul_rates(sizes: tuple[int, ...] = SIZES, seconds: float = 0.5) -> dict[int, float]:
    """{n: GFLOP/s} of a float32 [n, n] @ [n, n] on the default device (2 n^3 FLOP a call).

    Each size: one compile and warm-up call, then as many calls as fill ``seconds`` at the
    warm-up's pace (at least 2), timed together."""
    out = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        f = jax.jit(jnp.matmul)
        f(a, a).block_until_ready()
        t = time.perf_counter()
        f(a, a).block_until_ready()
        reps = max(2, int(seconds / max(time.perf_counter() - t, 1e-6)))
        t = time.perf_counter()
        for _ in range(reps):
            y = f(a, a)
        y.block_until_ready()
        out[n] = 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9
    return out


def matmul_peak(sizes: tuple[int, ...] = SIZES, seconds: float = 0.5) -> float:
    """The best of ``matmul_rates``, GFLOP/s."""
    return max(matmul_rates(sizes, seconds).values())
