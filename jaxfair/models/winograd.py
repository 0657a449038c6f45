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

# Narrowest channel count (min of input and output) at which F(2x2, 3x3) is used, from
# whole-layer measurements: the modulation (or batch norm) before the conv and the
# demodulation, bias and activation after it fuse into Winograd's transforms but are
# separate passes around the direct conv (docs/performance.md). From 128 channels it won at
# every size; at 64 channels it won too (1.04-2.2x), but Winograd doubles XLA's compile
# time of a small model (the demo generator: 2.5 -> 5.4 s for 1.5x less run time), which
# small images do not repay: 64 channels only from 128 px, where real models run.
MIN_CHANNELS = 128
MIN_CHANNELS_LARGE, LARGE_SIZE = 64, 128


def use_winograd(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                 dtype=jnp.float32) -> bool:
    """Whether ``conv3x3`` is the faster form for NHWC ``x_shape`` and HWIO ``w_shape``.

    Only on CPU (GPU and TPU convolution libraries choose their own algorithms) and only in
    float32: the transforms' sums would round at bfloat16's 8 bits where the direct
    convolution accumulates in float32.
    """
    _, h, wd, _ = x_shape
    k, k2, i, o = w_shape
    c = min(i, o)
    wide = c >= MIN_CHANNELS or (c >= MIN_CHANNELS_LARGE and min(h, wd) >= LARGE_SIZE)
    return (jax.default_backend() == "cpu" and jnp.dtype(dtype) == jnp.float32
            and k == k2 == 3 and h % 2 == 0 and wd % 2 == 0 and wide)


# The up conv's rule (``use_winograd_up``), measured the same way on whole ``conv2d_up2``
# layers (docs/performance.md): below 32 px the 16 small matmuls lose to the 4 phase convs,
# and below 128 input / 64 output channels the transforms cost what the products save.
UP_MIN_SIZE = 32
UP_MIN_IN, UP_MIN_OUT = 128, 64


def use_winograd_up(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                    dtype=jnp.float32) -> bool:
    """Whether ``conv_transpose3x3_stride2`` is the faster up conv for these shapes (CPU,
    float32, as ``use_winograd``)."""
    _, h, wd, _ = x_shape
    k, k2, i, o = w_shape
    return (jax.default_backend() == "cpu" and jnp.dtype(dtype) == jnp.float32
            and k == k2 == 3 and min(h, wd) >= UP_MIN_SIZE and i >= UP_MIN_IN
            and o >= UP_MIN_OUT)


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


def conv3x3(x: jnp.ndarray, w: jnp.ndarray, v: list | None = None) -> jnp.ndarray:
    """Same-size 3x3 cross-correlation (zero padding 1) by Winograd F(2x2, 3x3).

    Args:
      x: [N, H, W, I] with H and W even.
      w: [3, 3, I, O].
      v: ``kernel_transform(w)`` in x's dtype when computed ahead (a loaded generator
        keeps it: jaxfair.models.stylegan2.prepare); None computes it here.

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
    if v is None:
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


# The stride-2 transposed 3x3 conv, per axis (taps w0, w1, w2, unflipped as NVIDIA uses):
#   out[2r] = x[r] w0 + x[r-1] w2  (phase 0: two taps)    out[2r+1] = x[r] w1  (phase 1)
# A tile of two input positions r = 2R, 2R+1 reads d0 = x[2R-1], d1 = x[2R], d2 = x[2R+1]
# and writes out[4R .. 4R+3]. Phase 0 is F(2, 2): three products (d0 - d1) w2,
# d1 (w0 + w2), (d2 - d1) w0 for two outputs instead of four; phase 1 is its two products
# d1 w1, d2 w1. Input points per axis: d0 - d1, d1, d2 - d1, d2; the row-phase/kernel pairs
# each point feeds, as (phase, tap indices summed):
_UP_POINTS = (((0, (2,)),), ((0, (0, 2)), (1, (1,))), ((0, (0,)),), ((1, (1,)),))


def _up_kernel(w: jnp.ndarray, taps_a, taps_b) -> jnp.ndarray:
    """Sum of ``w[a, b]`` over the tap rows ``taps_a`` and columns ``taps_b``: [I, O]."""
    out = None
    for a in taps_a:
        for b in taps_b:
            out = w[a, b] if out is None else out + w[a, b]
    return out


def up_kernels(w: jnp.ndarray) -> list[list[jnp.ndarray]]:
    """The kernels of ``conv_transpose3x3_stride2``: [3, 3, I, O] -> 4 x 4 nested lists of
    [I, n * O], one per (row point, column point), n = the phase pairs the two points feed
    (the products that read one transformed input share one matmul)."""
    return [[jnp.concatenate([_up_kernel(w, ta, tb) for _, ta in _UP_POINTS[a]
                              for _, tb in _UP_POINTS[b]], axis=1) for b in range(4)]
            for a in range(4)]


def _up_outputs(m):
    """The four outputs of a tile along one axis from its products ``m[point][phase]``."""
    return (m[0][0] + m[1][0], m[1][1], m[1][0] + m[2][0], m[3][1])


def conv_transpose3x3_stride2(x: jnp.ndarray, w: jnp.ndarray, v: list | None = None
                              ) -> jnp.ndarray:
    """torch ``conv_transpose2d(x, w, stride=2)`` for a 3x3 kernel, by Winograd F(2, 2).

    The four output phases of the transposed conv are stride-1 correlations with 2x2, 2x1,
    1x2 and 1x1 taps (9 multiply-adds per input pixel and channel pair); with F(2x2, 2x2)
    on the 2-tap axes they cost 9 + 6 + 6 + 4 = 25 products per 2x2 input tile, 6.25 per
    pixel. Transforms are sums and differences only (the kernel's w0 + w2, the input's
    d0 - d1 and d2 - d1). Products that read the same transformed input share one matmul
    ``[P, I] @ [I, n * O]`` (n = 1, 2 or 4 phases), 16 matmuls in all.

    Args:
      x: [N, H, W, I]. w: [3, 3, I, O].
      v: ``up_kernels(w)`` in x's dtype when computed ahead (as ``conv3x3``'s ``v``); None
        computes them here.

    Returns:
      [N, 2H + 1, 2W + 1, O], equal to the direct transposed conv up to float rounding.
    """
    n, h, wd, i = x.shape
    if w.shape[:2] != (3, 3):
        raise ValueError(f"conv_transpose3x3_stride2 needs a 3x3 kernel, got {w.shape}")
    o = w.shape[3]
    if v is None:
        v = up_kernels(w.astype(x.dtype))
    th, tw = h // 2 + 1, wd // 2 + 1  # tiles: 2 * th input rows cover out rows 0..2H
    # Padded so tile R reads padded rows 2R, 2R+1, 2R+2 = pair R (both) and pair R+1 (first).
    xp = jnp.pad(x, ((0, 0), (1, 2 * th + 1 - h), (1, 2 * tw + 1 - wd), (0, 0)))
    xp = xp.reshape(n, th + 1, 2, tw + 1, 2, i)

    def points(d0, d1, d2):
        return d0 - d1, d1, d2 - d1, d2

    cols = points(xp[:, :, :, :tw, 0], xp[:, :, :, :tw, 1], xp[:, :, :, 1:, 0])  # [N,th+1,2,tw,I]
    m = [[None] * 4 for _ in range(4)]
    for b, col in enumerate(cols):
        for a, u in enumerate(points(col[:, :th, 0], col[:, :th, 1], col[:, 1:, 0])):
            pairs = [(pa, pb) for pa, _ in _UP_POINTS[a] for pb, _ in _UP_POINTS[b]]
            prod = (u.reshape(-1, i) @ v[a][b]).reshape(n, th, tw, len(pairs), o)
            m[a][b] = {pair: prod[:, :, :, k] for k, pair in enumerate(pairs)}
    # Column outputs for every row point and the row phases it feeds, then row outputs.
    col_out = [{pa: _up_outputs([{pb: m[a][b][pa, pb] for pb, _ in _UP_POINTS[b]}
                                 for b in range(4)])
                for pa, _ in _UP_POINTS[a]} for a in range(4)]
    cols_out = [_up_outputs([{pa: c[v] for pa, c in col_out[a].items()} for a in range(4)])
                for v in range(4)]  # [column v][row u], each [N, th, tw, O]
    y = jnp.stack([jnp.stack(c, axis=2) for c in cols_out], axis=4)  # [N, th, 4, tw, 4, O]
    return y.reshape(n, 4 * th, 4 * tw, o)[:, :2 * h + 1, :2 * wd + 1]
