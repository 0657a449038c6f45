"""StyleGAN2 kernels against naive numpy formulas (float64 references)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfair import roofline
from jaxfair.models import stylegan2_ops as ops


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


def naive_upfirdn2d(x, f, up, down, pad, gain):
    """NVIDIA's reference: zero-insert, pad (or crop), true 2-D convolution, decimate."""
    n, h, w, c = x.shape
    x0, x1, y0, y1 = pad
    u = np.zeros((n, h * up, w * up, c))
    u[:, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)), (0, 0)))
    u = u[:, max(-y0, 0):u.shape[1] - max(-y1, 0), max(-x0, 0):u.shape[2] - max(-x1, 0)]
    k = np.asarray(f, np.float64)[::-1, ::-1] * gain
    fh, fw = k.shape
    oh, ow = u.shape[1] - fh + 1, u.shape[2] - fw + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(fh):
        for j in range(fw):
            out += k[i, j] * u[:, i:i + oh, j:j + ow]
    return out[:, ::down, ::down]


def naive_conv(x, w, pad):
    """Cross-correlation, x [N,H,W,I], w [k,k,I,O], symmetric zero padding."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = w.shape[0]
    oh, ow = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(k):
        for j in range(k):
            out += x[:, i:i + oh, j:j + ow] @ w[i, j]
    return out


def naive_conv_transpose_stride2(x, w):
    """torch conv_transpose2d(stride 2, padding 0) with weight [I, O, k, k] = w[k,k,I,O]:
    every input pixel scatters w (unflipped) into a (2H + k - 2)^2 output."""
    n, h, wd, _ = x.shape
    k = w.shape[0]
    out = np.zeros((n, 2 * h + k - 2, 2 * wd + k - 2, w.shape[3]))
    for a in range(h):
        for b in range(wd):
            out[:, 2 * a:2 * a + k, 2 * b:2 * b + k] += np.einsum("ni,hwio->nhwo", x[:, a, b], w)
    return out


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


F = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0


@pytest.mark.parametrize("up,down,pad,gain", [
    (1, 1, (1, 2, 0, 1), 1.0),
    (2, 1, (2, 1, 2, 1), 4.0),
    (2, 1, (1, 1, 1, 1), 4.0),
    (1, 2, (1, 1, 1, 1), 1.0),
    (2, 1, (-1, 2, 0, -1), 4.0),
])
def test_upfirdn2d_matches_naive(rng, up, down, pad, gain):
    x = rng.standard_normal((2, 5, 6, 3))
    f = rng.standard_normal((4, 4))  # asymmetric: catches a missing flip
    got = ops.upfirdn2d(jnp.asarray(x, jnp.float32), jnp.asarray(f, jnp.float32), up=up,
                        down=down, padding=pad, gain=gain)
    want = naive_upfirdn2d(x, f, up, down, pad, gain)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)


def test_fir_filter_is_normalised_outer_product():
    np.testing.assert_allclose(np.asarray(ops.fir_filter((1, 3, 3, 1))), F, atol=1e-7)


def test_upsample2d_matches_naive(rng):
    x = rng.standard_normal((2, 4, 4, 3))
    got = ops.upsample2d(jnp.asarray(x, jnp.float32), jnp.asarray(F, jnp.float32))
    assert got.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(np.asarray(got), naive_upfirdn2d(x, F, 2, 1, (2, 1, 2, 1), 4),
                               atol=1e-5)
    # A constant image stays constant away from the borders (gain 4 compensates zeros).
    ones = ops.upsample2d(jnp.ones((1, 6, 6, 1)), jnp.asarray(F, jnp.float32))
    np.testing.assert_allclose(np.asarray(ones)[0, 2:-2, 2:-2, 0], 1.0, atol=1e-6)


def test_conv2d_up2_is_transposed_conv_then_fir(rng):
    x = rng.standard_normal((2, 4, 5, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    got = ops.conv2d_up2(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32),
                         jnp.asarray(F, jnp.float32))
    want = naive_upfirdn2d(naive_conv_transpose_stride2(x, w), F, 1, 1, (1, 1, 1, 1), 4)
    assert got.shape == (2, 8, 10, 4)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_conv_transpose_stride2_matches_naive_and_zero_insertion(rng, k):
    x = rng.standard_normal((2, 4, 5, 3))
    w = rng.standard_normal((k, k, 3, 4))
    xj, wj = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
    got = ops.conv_transpose2d_stride2(xj, wj)
    assert got.shape == (2, 2 * 4 + k - 2, 2 * 5 + k - 2, 4)
    np.testing.assert_allclose(np.asarray(got), naive_conv_transpose_stride2(x, w),
                               atol=1e-4, rtol=1e-5)
    # The textbook XLA form: convolve the zero-inserted input with the flipped kernel.
    dilated = jax.lax.conv_general_dilated(
        xj, wj[::-1, ::-1], (1, 1), ((k - 1, k - 1), (k - 1, k - 1)), lhs_dilation=(2, 2),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(np.asarray(got), np.asarray(dilated), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("k", [3, 4])
def test_conv_transpose_stride2_executes_exactly_the_transposed_conv_macs(k):
    n, h, w, i, o = 2, 6, 5, 8, 4
    x = jax.ShapeDtypeStruct((n, h, w, i), jnp.float32)
    kern = jax.ShapeDtypeStruct((k, k, i, o), jnp.float32)
    flops = roofline.compiled_flops(ops.conv_transpose2d_stride2, x, kern)
    # k*k MACs per input pixel and (I, O) pair: no zero taps, no inserted zeros.
    assert flops == 2 * k * k * n * h * w * i * o


def test_sum_taps_is_the_sum_over_kernel_taps(rng):
    w = rng.standard_normal((3, 3, 5, 4))
    np.testing.assert_allclose(np.asarray(ops.sum_taps(jnp.asarray(w, jnp.float32))),
                               w.sum(axis=(0, 1)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv_nonfused_equals_fused(rng, up):
    """Non-fused (scale input, shared conv, scale output) == per-sample modulated weights."""
    x = rng.standard_normal((3, 4, 4, 5))
    w = rng.standard_normal((3, 3, 5, 6))
    s = rng.standard_normal((3, 5)) + 1
    got = ops.modulated_conv2d(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32),
                               jnp.asarray(s, jnp.float32), up=up, f=jnp.asarray(F, jnp.float32))
    want = []
    for n in range(3):  # the official fused form: one grouped conv with w * s_n, demodulated
        wn = w * s[n][None, None, :, None]
        wn = wn / np.sqrt(np.sum(wn ** 2, axis=(0, 1, 2), keepdims=True) + 1e-8)
        xn = x[n:n + 1]
        if up == 1:
            want.append(naive_conv(xn, wn, 1))
        else:
            want.append(naive_upfirdn2d(naive_conv_transpose_stride2(xn, wn), F, 1, 1,
                                        (1, 1, 1, 1), 4))
    np.testing.assert_allclose(np.asarray(got), np.concatenate(want), atol=1e-4, rtol=1e-4)


def test_modulated_conv_without_demodulation(rng):
    x = rng.standard_normal((2, 3, 3, 4))
    w = rng.standard_normal((1, 1, 4, 3))
    s = rng.standard_normal((2, 4))
    got = ops.modulated_conv2d(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32),
                               jnp.asarray(s, jnp.float32), demodulate=False)
    want = np.einsum("nhwi,io->nhwo", x * s[:, None, None, :], w[0, 0])
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_bias_act_lrelu_gain_clamp(rng):
    x = rng.standard_normal((4, 7)) * 200
    b = rng.standard_normal(7)
    got = ops.bias_act(jnp.asarray(x, jnp.float32), jnp.asarray(b, jnp.float32), "lrelu",
                       clamp=256.0)
    y = x + b
    want = np.clip(np.where(y >= 0, y, 0.2 * y) * np.sqrt(2), -256, 256)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-4)
    assert np.asarray(got).max() <= 256


def test_normalize_2nd_moment(rng):
    z = rng.standard_normal((3, 10)) * 3
    want = z / np.sqrt(np.mean(z ** 2, axis=1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(np.asarray(ops.normalize_2nd_moment(jnp.asarray(z))), want,
                               rtol=1e-5)


@pytest.mark.parametrize("psi,cutoff", [(0.7, None), (0.5, 4), (1.0, None), (0.0, 2)])
def test_truncation_with_cutoff(rng, psi, cutoff):
    ws = rng.standard_normal((2, 8, 5)).astype(np.float32)
    w_avg = rng.standard_normal(5).astype(np.float32)
    got = np.asarray(ops.truncate(jnp.asarray(ws), jnp.asarray(w_avg), psi, cutoff))
    want = ws.copy()
    rows = slice(None) if cutoff is None else slice(0, cutoff)
    if psi != 1:
        want[:, rows] = w_avg + psi * (ws[:, rows] - w_avg)
    np.testing.assert_allclose(got, want, atol=1e-6)
    if cutoff is not None:  # rows past the cutoff are untouched, bit for bit
        np.testing.assert_array_equal(got[:, cutoff:], ws[:, cutoff:])


def test_truncation_traced_psi_and_cutoff_compile_once(rng):
    ws = jnp.asarray(rng.standard_normal((2, 8, 5)), jnp.float32)
    w_avg = jnp.zeros(5)
    traces = []

    @jax.jit
    def f(psi, cutoff):
        traces.append(1)
        return ops.truncate(ws, w_avg, psi, cutoff)

    for psi, cut in [(0.7, 8), (0.5, 4), (1.0, 2)]:
        f(jnp.float32(psi), jnp.int32(cut))
    assert len(traces) == 1
