"""The PRNG helpers of jaxfair.keys."""

import jax
import numpy as np

from jaxfair import keys


def test_flat_draws_are_the_same_values():
    """keys.normal / keys.uniform are faster-compiling jax.random.normal / uniform, not
    other distributions: the same bits for every shape, eager (drawn at a power-of-two
    size) or traced (so random models, noise and test inputs are unchanged by them)."""
    key = jax.random.key(3)
    for shape, dtype in [((3, 3, 4, 5), np.float32), ((4, 4, 6), np.float32),
                         ((2, 7), jax.numpy.bfloat16), ((1,), np.float32),
                         ((8, 8), np.float32)]:
        got = np.asarray(keys.normal(key, shape, dtype))
        want = np.asarray(jax.random.normal(key, shape, dtype))
        assert got.shape == shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    got = keys.uniform(key, (2, 5, 3, 3), minval=-1.3, maxval=1.3)
    want = jax.random.uniform(key, (2, 5, 3, 3), minval=-1.3, maxval=1.3)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # Inside a trace the draw has the exact size: the same values again.
    got = jax.jit(lambda k: keys.normal(k, (3, 5)))(key)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jax.random.normal(key, (3, 5))))
