"""Pure jnp kernels of the StyleGAN2 generator (NHWC activations, HWIO kernels).

Each function matches one operation of NVIDIA's stylegan2-ada-pytorch (``torch_utils/ops``
and ``training/networks.py``) in float32; tests compare them with naive numpy formulas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxfair import keys
from jaxfair.models import winograd

_NHWC = ("NHWC", "HWIO", "NHWC")

ACTIVATION_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2.0)}


def fir_filter(taps: Sequence[float]) -> jnp.ndarray:
    """2-D FIR filter from 1-D taps: ``outer(taps, taps)`` normalised to sum 1. Shape [k, k]."""
    t = jnp.asarray(taps, jnp.float32)
    f = jnp.outer(t, t)
    return f / jnp.sum(f)


def fir_taps(taps: Sequence[float]) -> jnp.ndarray:
    """Normalised 1-D taps [k] whose outer product is ``fir_filter(taps)``."""
    t = jnp.asarray(taps, jnp.float32)
    return t / jnp.sum(t)


def _correlate_axis(x: jnp.ndarray, f: jnp.ndarray, axis: int, down: int) -> jnp.ndarray:
    """Valid 1-D correlation of x with f along ``axis`` (then every ``down``-th sample), as
    a sum of shifted slices: XLA fuses it into one loop, forward and backward, where a
    depthwise convolution's gradient is slow on CPU."""
    k = f.shape[0]
    n = x.shape[axis] - k + 1
    out = None
    for i in range(k):
        term = lax.slice_in_dim(x, i, i + n, axis=axis) * f[i]
        out = term if out is None else out + term
    if down > 1:
        out = lax.slice_in_dim(out, 0, n, stride=down, axis=axis)
    return out


def upfirdn2d(x: jnp.ndarray, f: jnp.ndarray, *, up: int = 1, down: int = 1,
              padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0
              ) -> jnp.ndarray:
    """Upsample by zero insertion, pad, convolve with ``f``, downsample (NVIDIA upfirdn2d).

    Args:
      x: [N, H, W, C].
      f: [fh, fw] filter, or [k] taps of the separable filter ``outer(f, f)``; applied as a
        true convolution (flipped), like NVIDIA's ``flip_filter=False``.
      up, down: integer factors, same on both axes.
      padding: (x0, x1, y0, y1) after upsampling; negative values crop.
      gain: overall scale of the filter.

    Returns:
      [N, (H*up + y0 + y1 - fh + 1) // down, (W*up + x0 + x1 - fw + 1) // down, C].
    """
    x0, x1, y0, y1 = padding
    zero = jnp.zeros((), x.dtype)
    # Interior padding inserts up-1 zeros between samples; NVIDIA also appends up-1 zeros
    # after the last one, hence the extra (up - 1) on the high side.
    x = lax.pad(x, zero, ((0, 0, 0), (y0, y1 + up - 1, up - 1), (x0, x1 + up - 1, up - 1),
                          (0, 0, 0)))
    f = jnp.asarray(f, x.dtype)
    if f.ndim == 1:
        k = f[::-1] * jnp.asarray(gain, x.dtype) ** 0.5
        return _correlate_axis(_correlate_axis(x, k, 1, down), k, 2, down)
    k = f[::-1, ::-1] * gain
    fh, fw = k.shape
    oh, ow = x.shape[1] - fh + 1, x.shape[2] - fw + 1
    out = sum(x[:, i:i + oh, j:j + ow] * k[i, j] for i in range(fh) for j in range(fw))
    return out[:, ::down, ::down]


def upsample2d(x: jnp.ndarray, f: jnp.ndarray, up: int = 2) -> jnp.ndarray:
    """Skip-image upsampling: [N, H, W, C] -> [N, H*up, W*up, C] (NVIDIA ``upsample2d``).

    ``f``: [k] separable taps or a [k, k] filter.
    """
    fh = f.shape[0]
    p0, p1 = (fh + up - 1) // 2, (fh - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def _pointwise(x: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """A 1x1 conv as the matmul it is: x [N, H, W, I] @ w [I, O] -> [N, H, W, O] (XLA:CPU
    runs a 1x1 ``lax.conv`` 3-7x slower; docs/performance.md)."""
    return (x.reshape(-1, x.shape[3]) @ w.astype(x.dtype)).reshape(*x.shape[:3], w.shape[1])


def conv2d(x: jnp.ndarray, w: jnp.ndarray, derived: dict | None = None) -> jnp.ndarray:
    """Same-size cross-correlation. x [N, H, W, I], w [k, k, I, O] -> [N, H, W, O].

    A 3x3 kernel on wide channels runs as Winograd F(2x2, 3x3) where that was measured
    faster (``winograd.use_winograd``: CPU, float32, min(I, O) >= 128); else XLA's
    convolution. ``derived``: ``derive_conv``'s weights, used where present.
    """
    if winograd.use_winograd(x.shape, w.shape, x.dtype):
        return winograd.conv3x3(x, w, (derived or {}).get("winograd"))
    if w.shape[:2] == (1, 1):  # toRGB
        return _pointwise(x, w[0, 0])
    p = w.shape[0] // 2
    return lax.conv_general_dilated(x, w.astype(x.dtype), (1, 1), ((p, p), (p, p)),
                                    dimension_numbers=_NHWC)


def phase_taps(w: jnp.ndarray) -> list[list[jnp.ndarray]]:
    """The sub-pixel taps of ``conv_transpose2d_stride2``: [k, k, I, O] -> 2 x 2 nested lists
    ``w[a::2, b::2]`` reversed on both axes ([m_a, m_b, I, O])."""
    return [[w[a::2, b::2][::-1, ::-1] for b in range(2)] for a in range(2)]


def conv_transpose2d_stride2(x: jnp.ndarray, w: jnp.ndarray,
                             taps: list | None = None) -> jnp.ndarray:
    """torch ``conv_transpose2d(x, w, stride=2)`` with the unflipped weight, as NVIDIA uses.

    Every input pixel scatters ``x[i, j] * w`` into ``out[2i:2i+k, 2j:2j+k]``. Computed in
    sub-pixel form with exactly the k*k taps of the transposed convolution: output phase
    (a, b) (row parity, column parity) is a stride-1 correlation of the input with its own
    taps ``w[a::2, b::2]`` reversed (for k = 3: 2x2, 2x1, 1x2 and 1x1, 9 in all), the four
    phases interleaved afterwards. Neither zeros inserted between input pixels nor zero taps
    padding the phases to one shape are multiplied: executed MACs are those of the
    architecture, and on CPU the four small convolutions beat both the zero-inserted
    (``lhs_dilation``) convolution and one 4-phase convolution with padded 2x2 taps
    (docs/performance.md).

    Args:
      x: [N, H, W, I]. w: [k, k, I, O], k >= 2.
      taps: ``phase_taps(w)`` when computed ahead (a loaded generator keeps them); None
        computes them here.

    Returns:
      [N, 2H + k - 2, 2W + k - 2, O].
    """
    n, h, wd, _ = x.shape
    k, o = w.shape[0], w.shape[3]
    if k < 2:
        raise ValueError(f"kernel size must be >= 2, got {k}")
    if taps is None:
        taps = phase_taps(w)
    m = (k + 1) // 2  # taps of phase 0 (phase 1 has k // 2)
    # Output row 2r + a of phase a takes input rows r - t with taps w[a + 2t], t < m_a: a
    # full correlation (padding m_a - 1 both sides) with the reversed taps, H + m_a - 1 rows.
    phases = []
    for a in range(2):
        row = []
        for b in range(2):
            wab = taps[a][b]  # [m_a, m_b, I, O]
            pa, pb = wab.shape[0] - 1, wab.shape[1] - 1
            if pa == pb == 0:  # one tap
                y = _pointwise(x, wab[0, 0])
            else:
                y = lax.conv_general_dilated(x, wab.astype(x.dtype), (1, 1),
                                             ((pa, pa), (pb, pb)), dimension_numbers=_NHWC)
            # Pad every phase to the largest one's [H + m - 1, W + m - 1] (zeros past the
            # end are cropped below) so the four interleave by a reshape.
            row.append(jnp.pad(y, ((0, 0), (0, m - 1 - pa), (0, m - 1 - pb), (0, 0))))
        phases.append(jnp.stack(row, axis=3))  # [N, H+m-1, W+m-1, 2, O]
    hh, ww = h + m - 1, wd + m - 1
    y = jnp.stack(phases, axis=2).reshape(n, 2 * hh, 2 * ww, o)  # [N, hh, 2, ww, 2, O]
    return y[:, :2 * h + k - 2, :2 * wd + k - 2]


def conv2d_up2(x: jnp.ndarray, w: jnp.ndarray, f: jnp.ndarray,
               derived: dict | None = None) -> jnp.ndarray:
    """The 2x up-sampling conv of ``conv0``: [N, H, W, I] -> [N, 2H, 2W, O].

    NVIDIA runs a stride-2 transposed conv with the *unflipped* weight, then the FIR filter
    ``f`` ([k] taps or [k, k]) with gain 4 and the padding that brings 2H + k - 2 to 2H.
    The transposed conv runs as Winograd F(2x2, 2x2) where measured faster
    (``winograd.use_winograd_up``), else in the exact-tap phase form. ``derived``:
    ``derive_conv``'s weights, used where present.
    """
    k = w.shape[0]
    fh = f.shape[0]
    derived = derived or {}
    if winograd.use_winograd_up(x.shape, w.shape, x.dtype):
        y = winograd.conv_transpose3x3_stride2(x, w, derived.get("up_winograd"))
    else:
        y = conv_transpose2d_stride2(x, w, derived.get("phases"))
    # NVIDIA conv2d_resample with padding k//2: (1, 1) for k = 3 and a 4-tap filter.
    p = k // 2
    p0 = p + (fh + 1) // 2 - (k - 1)
    p1 = p + (fh - 2) // 2 - (k - 2)
    return upfirdn2d(y, f, padding=(p0, p1, p0, p1), gain=4.0)


def sum_taps(w: jnp.ndarray) -> jnp.ndarray:
    """``sum(w, axis=(0, 1))`` for a conv weight [k, k, I, O] -> [I, O], as k*k slice adds.

    XLA:CPU runs ``jnp.sum`` over the two leading axes of a [3, 3, 512, 512] weight ~300x
    slower than the adds (hundreds of ms, more than the convolution; docs/performance.md).
    """
    out = None
    for a in range(w.shape[0]):
        for b in range(w.shape[1]):
            out = w[a, b] if out is None else out + w[a, b]
    return out


def derive_conv(w: jnp.ndarray, x_shape: tuple[int, ...], up: int = 1) -> dict:
    """Everything ``modulated_conv2d`` computes from the weight alone, for float32 inputs of
    ``x_shape`` on this backend: the squared taps' sum of demodulation (``sq_taps`` [I, O])
    and the conv's kernel form, the Winograd transform (``winograd``), the up conv's
    Winograd kernels (``up_winograd``) or its phase taps (``phases``) as the conv's rule
    picks. A jitted step recomputes these on every call (80 ms of a 2 s FFHQ-1024 image on
    CPU, docs/performance.md); a loaded generator computes them once
    (jaxfair.models.stylegan2.prepare) and passes them back in as ``derived``."""
    out = {"sq_taps": sum_taps(jnp.square(w))}
    if up == 2:
        if winograd.use_winograd_up(x_shape, w.shape):
            out["up_winograd"] = winograd.up_kernels(w)
        else:
            out["phases"] = phase_taps(w)
    elif winograd.use_winograd(x_shape, w.shape):
        out["winograd"] = winograd.kernel_transform(w)
    return out


def modulated_conv2d(x: jnp.ndarray, w: jnp.ndarray, styles: jnp.ndarray, *,
                     demodulate: bool = True, up: int = 1, f: jnp.ndarray | None = None,
                     derived: dict | None = None) -> jnp.ndarray:
    """StyleGAN2 modulated convolution in its non-fused form.

    The fused form convolves each sample with ``w * s_n`` (grouped conv); here the input is
    scaled by the styles, one shared-weight conv runs for the whole batch, and the output is
    scaled by the demodulation coefficients. The two are equal in exact arithmetic.

    Args:
      x: [N, H, W, I] activations.
      w: [k, k, I, O] raw weight (no equalized-lr scaling: demodulation cancels it).
      styles: [N, I] per-sample input-channel scales.
      demodulate: divide each output channel by the norm of its modulated weight.
      up: 1 or 2 (2 uses ``conv2d_up2`` with the FIR filter ``f``).
      f: [fh, fw] FIR filter, needed when up == 2.
      derived: ``derive_conv(w, ...)`` computed ahead (float32), or None: what is missing
        (or made for another dtype's form) is computed here, with the same functions.

    Returns:
      [N, H*up, W*up, O].
    """
    derived = derived or {}
    y = x * styles[:, None, None, :].astype(x.dtype)
    y = conv2d_up2(y, w, f, derived) if up == 2 else conv2d(y, w, derived)
    if demodulate:
        # sum_{kh,kw,i} (w * s_i)^2 = s^2 @ sum_{kh,kw} w^2
        sq = derived["sq_taps"] if "sq_taps" in derived else sum_taps(jnp.square(w))
        d = lax.rsqrt(jnp.square(styles) @ sq + 1e-8)
        y = y * d[:, None, None, :].astype(y.dtype)
    return y


def bias_act(x: jnp.ndarray, b: jnp.ndarray | None, act: str = "linear",
             gain: float | None = None, clamp: float | None = None) -> jnp.ndarray:
    """``clamp(act(x + b) * gain)`` over the last axis, as NVIDIA ``bias_act``.

    Args:
      x: [..., C]. b: [C] or None. act: 'linear' or 'lrelu' (slope 0.2).
      gain: defaults to the activation's gain (sqrt 2 for lrelu). clamp: None or > 0.
    """
    if b is not None:
        x = x + b.astype(x.dtype)
    if act == "lrelu":
        x = jnp.where(x >= 0, x, x * 0.2)
    elif act != "linear":
        raise ValueError(f"unknown activation {act!r}")
    g = ACTIVATION_GAINS[act] if gain is None else gain
    if g != 1:
        x = x * g
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    return x


def normalize_2nd_moment(x: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """``x * rsqrt(mean(x^2, -1) + eps)`` for x [N, D]."""
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def truncate(ws: jnp.ndarray, w_avg: jnp.ndarray, psi: float | jnp.ndarray,
             cutoff: int | jnp.ndarray | None = None) -> jnp.ndarray:
    """Truncation trick ``w_avg + psi * (w - w_avg)`` on rows ``< cutoff`` (all if None).

    ``psi`` and ``cutoff`` may be traced values, so one compiled function serves every
    setting. Rows left alone (and psi == 1) are returned bit-exact, as in the official code.

    Args:
      ws: [N, num_ws, w_dim]. w_avg: [w_dim].
    """
    num_ws = ws.shape[1]
    rows = jnp.arange(num_ws) < (num_ws if cutoff is None else cutoff)
    apply = rows[None, :, None] & (jnp.asarray(psi) != 1)
    return jnp.where(apply, w_avg + psi * (ws - w_avg), ws)


def random_noise(key: jax.Array, n: int, res: int, dtype=jnp.float32) -> jnp.ndarray:
    """Per-sample noise image [N, res, res, 1] (broadcast over channels)."""
    return keys.normal(key, (n, res, res, 1), dtype)
