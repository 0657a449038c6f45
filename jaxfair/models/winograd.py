"""Winograd F(2x2, 3x3): a same-size 3x3 convolution with 16 multiplies per 2x2 outputs.

The direct convolution spends 9 multiply-adds per output pixel and channel pair; Winograd's
minimal filtering algorithm (Lavin & Gray, 2016) transforms each 4x4 input tile and the 3x3
kernel so that one 2x2 output tile costs 16 products: 2.25x fewer multiply-adds, equal in
exact arithmetic. The transforms use only 0, +-1 and +-1/2, so float32 results differ from
the direct form by a few ulps of the largest partial sum (tests/models/test_winograd.py).

Layout, chosen by measurement on XLA:CPU (docs/performance.md): the 16 transformed inputs
are separate arrays, each multiplied by its transformed kernel slice with one matmul
``[N*H/2*W/2, I] @ [I, O]`` (stacked for one batched matmul, the whole conv ran 1.3x
slower). The transforms are memory-bound elementwise work of 4x the
activations, so the algorithm pays only when the matmuls are wide: ``use_winograd`` is the
measured rule.

Example:
  y = winograd.conv3x3(x, w)  # == lax.conv_general_dilated(x, w, (1, 1), 'SAME') to ~1e-6
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Narrowest (min of input and output) channel count at which F(2x2, 3x3) beat XLA:CPU's
# direct convolution (docs/performance.md): at 64 channels the transforms cost as much as
# the products they save.
MIN_CHANNELS = 128


def use_winograd(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                 dtype=jnp.float32) -> bool:
    """Whether ``conv3x3`` is the faster form for NHWC ``x_shape`` and HWIO ``w_shape``.

    Only on CPU (GPU and TPU convolution libraries choose their own algorithms) and only in
    float32: the transforms' sums would round at bfloat16's 8 bits where the direct
    convolution accumulates in float32.
    """
    _, h, wd, _ = x_shape
    k, k2, i, o = w_shape
    return (jax.default_backend() == "cpu" and jnp.dtype(dtype) == jnp.float32
            and k == k2 == 3 and h % 2 == 0 and wd % 2 == 0 and min(i, o) >= MIN_CHANNELS)


def _bt(d0, d1, d2, d3):
    """``B^T d`` along one axis: four input rows of a tile -> four transformed rows."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _g(g0, g1, g2):
    """``G g`` along one axis: three kernel taps -> four transformed taps."""
    return g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2


def _at(m0, m1, m2, m3):
    """``A^T m`` along one axis: four products -> two outputs."""
    return m0 + m1 + m2, m1 - m2 - m3


def kernel_transform(w: jnp.ndarray) -> list[list[jnp.ndarray]]:
    """``G w G^T``: [3, 3, I, O] -> 4 x 4 nested lists of [I, O]."""
    rows = _g(w[0], w[1], w[2])  # each [3, I, O]
    return [list(_g(r[0], r[1], r[2])) for r in rows]


def conv3x3(x: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """Same-size 3x3 cross-correlation (zero padding 1) by Winograd F(2x2, 3x3).

    Args:
      x: [N, H, W, I] with H and W even.
      w: [3, 3, I, O].

    Returns:
      [N, H, W, O], equal to the direct convolution up to float rounding.
    """
    n, h, wd, i = x.shape
    if w.shape[:2] != (3, 3) or h % 2 or wd % 2:
        raise ValueError(f"conv3x3 needs a 3x3 kernel and even H, W; got x {x.shape}, "
                         f"w {w.shape}")
    o = w.shape[3]
    th, tw = h // 2, wd // 2
    # Padded input as pairs of rows and columns: the 4x4 tile of output tile (r, c) is
    # pair rows r, r+1 and pair columns c, c+1, so every tile row/column is a plain slice.
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(n, th + 1, 2, tw + 1, 2, i)
    cols = _bt(*(xp[:, :, :, j // 2:j // 2 + tw, j % 2] for j in range(4)))  # [N,th+1,2,tw,I]
    v = kernel_transform(w.astype(x.dtype))
    m = [[None] * 4 for _ in range(4)]
    for b, col in enumerate(cols):
        tile_rows = _bt(*(col[:, r // 2:r // 2 + th, r % 2] for r in range(4)))  # [N,th,tw,I]
        for a, u in enumerate(tile_rows):
            m[a][b] = (u.reshape(-1, i) @ v[a][b]).reshape(n, th, tw, o)
    rows = [_at(*(m[a][b] for a in range(4))) for b in range(4)]  # (row 2r, row 2r+1)
    top = _at(*(r[0] for r in rows))  # output row 2r: (column 2c, column 2c+1)
    bottom = _at(*(r[1] for r in rows))  # output row 2r+1
    y = jnp.stack([jnp.stack(top, axis=3), jnp.stack(bottom, axis=3)], axis=2)
    return y.reshape(n, h, wd, o)  # [N, th, 2, tw, 2, O] -> [N, H, W, O]
