"""Named PRNG streams: every command derives its keys from ``root(seed)`` the same way.

The same seed therefore gives the same prior statistics in every command, and the searches
of ``python -m jaxfair.search`` are those of the bulk job's unit 0. Each stream is
``fold_in(root, STREAM)``; per-item keys fold the item index in once more:

  prior(root)             the prior's statistics (``search.spaces.estimate_prior``)
  unit(root, i)           work unit i: its searches (split per search) or its draw batches
  variations(root, i)     unit i's variation candidates
  labels(root, b)         batch b of labelled prior samples (directions, audit): z and
                          noise from ``split(labels(root, b))``
  draws(root, g, b)       batch b of the distribution method's draws of group g
  starts(root, g)         the lab's search starts drawn from group g's mixture
  models(root)            random-weight stand-in models (benchmark presets)
  planner(root)           the planner: its shared stream (batch b: fold_in(fold_in(., 0), b))
                          and its gated proposals (round r: fold_in(fold_in(., 1), r))
  reference(root, b)      batch b of the dataset report's unguided reference sample: z and
                          noise from ``split(reference(root, b))`` (report.seed's root)

Model fits (``python -m jaxfair.demo.train``, ``python -m jaxfair.sample fit``) are training
runs with their own seed (``distribution.seed``): they split it into their own streams.

Example:
  root = keys.root(config.seed)
  prior = spaces.estimate_prior(G, keys.prior(root))
  search_keys = jax.random.split(keys.unit(root, unit_id), searches_per_unit)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# fold_in data of the streams under the root key (fixed: datasets depend on them).
PRIOR, UNITS, VARIATIONS, MODELS, DRAWS, STARTS, PLANNER, REFERENCE = 0, 1, 2, 3, 4, 5, 6, 7
LABELS = 1000  # batch b is fold_in(root, LABELS + b)


def root(seed: int) -> jax.Array:
    """The root key of a command run with ``seed``."""
    return jax.random.key(seed)


def prior(root: jax.Array) -> jax.Array:
    return jax.random.fold_in(root, PRIOR)


def units(root: jax.Array) -> jax.Array:
    """The root of the unit streams (``unit(root, i) == fold_in(units(root), i)``)."""
    return jax.random.fold_in(root, UNITS)


def unit(root: jax.Array, i) -> jax.Array:
    return jax.random.fold_in(units(root), i)


def variations(root: jax.Array, i) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(root, VARIATIONS), i)


def labels(root: jax.Array, b) -> jax.Array:
    return jax.random.fold_in(root, LABELS + b)


def draws(root: jax.Array, g, b) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, DRAWS), g), b)


def starts(root: jax.Array, g) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(root, STARTS), g)


def models(root: jax.Array) -> jax.Array:
    return jax.random.fold_in(root, MODELS)


def planner(root: jax.Array) -> jax.Array:
    return jax.random.fold_in(root, PLANNER)


def reference(root: jax.Array, b) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(root, REFERENCE), b)


def _flat_size(key: jax.Array, n: int) -> int:
    """How many values to draw for ``n``: the next power of two for an eager draw, n itself
    inside a trace (or with the original threefry, whose values depend on the size).

    With partitionable threefry (jax's default) value i of a flat draw depends only on the
    key and i, so the first n values of a longer draw are the n-value draw; rounding eager
    draws up to a power of two compiles one program per power of two instead of one per
    layer size (random model weights: dozens of sizes)."""
    if isinstance(key, jax.core.Tracer) or not jax.config.jax_threefry_partitionable:
        return n
    return 1 << max(n - 1, 0).bit_length()


def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``, drawn over the flat size and reshaped.

    The same values (threefry's counters run over the flat index; tests/test_keys.py holds
    it), but XLA:CPU compiles the flat draw several times faster: a [2, 4, 4, 8] draw took
    5 s to compile, the flat one 0.6 s. Every eager draw of a new size compiles once
    (random model weights: one per layer shape), so eager draws round the size up to a
    power of two (``_flat_size``).
    """
    n = math.prod(shape)
    return jax.random.normal(key, (_flat_size(key, n),), dtype)[:n].reshape(shape)


def uniform(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32, minval=0.0,
            maxval=1.0) -> jax.Array:
    """``jax.random.uniform`` drawn flat and reshaped: the same values, as ``normal``."""
    n = math.prod(shape)
    return jax.random.uniform(key, (_flat_size(key, n),), dtype, minval,
                              maxval)[:n].reshape(shape)
