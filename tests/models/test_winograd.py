"""Winograd F(2x2, 3x3) against the direct convolution, and the port with it everywhere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jaxfair import roofline
from jaxfair.models import stylegan2 as sg
from jaxfair.models import stylegan2_ops as ops
from jaxfair.models import winograd


def correlate64(x, w):
    """Same-size 3x3 cross-correlation in float64 numpy: the exact reference."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, h, wd, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(xp[:, a:a + h, b:b + wd] @ w[a, b] for a in range(3) for b in range(3))


@pytest.mark.parametrize("shape", [(2, 4, 4, 8, 8), (1, 6, 10, 5, 7), (3, 8, 2, 16, 3)])
def test_equals_the_direct_convolution(shape):
    """Every output pixel, borders and non-square images included, to float32 rounding:
    no worse than 4x the direct convolution's own error against float64."""
    n, h, wd, i, o = shape
    rng = np.random.default_rng(0)  # numpy: no eager PRNG compile per shape
    x = rng.standard_normal((n, h, wd, i), np.float32)
    w = rng.standard_normal((3, 3, i, o), np.float32)
    exact = correlate64(x, w)
    with jax.default_matmul_precision("highest"):
        got = np.asarray(jax.jit(winograd.conv3x3)(x, w))
        direct = np.asarray(lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC")))
    scale = np.max(np.abs(exact))
    err, err_direct = np.max(np.abs(got - exact)), np.max(np.abs(direct - exact))
    assert got.shape == (n, h, wd, o)
    assert err <= max(4 * err_direct, 4 * np.finfo(np.float32).eps * scale), (err, err_direct)


def transposed64(x, w):
    """torch ``conv_transpose2d(x, w, stride=2)`` in float64 numpy: every input pixel
    scatters ``x[i, j] * w`` into ``out[2i:2i+3, 2j:2j+3]``."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, h, wd, _ = x.shape
    out = np.zeros((n, 2 * h + 1, 2 * wd + 1, w.shape[3]))
    for a in range(3):
        for b in range(3):
            out[:, a:a + 2 * h:2, b:b + 2 * wd:2] += x @ w[a, b]
    return out


@pytest.mark.parametrize("shape", [(2, 4, 4, 8, 8), (1, 5, 3, 6, 4), (1, 1, 1, 3, 2),
                                   (3, 2, 7, 16, 5)])
def test_transposed_equals_the_scatter_definition(shape):
    """Every output pixel of the up conv, odd and one-pixel inputs included, to float32
    rounding: no worse than 4x the sub-pixel direct form's own error against float64."""
    n, h, wd, i, o = shape
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, h, wd, i), np.float32)
    w = rng.standard_normal((3, 3, i, o), np.float32)
    exact = transposed64(x, w)
    with jax.default_matmul_precision("highest"):
        got = np.asarray(jax.jit(winograd.conv_transpose3x3_stride2)(x, w))
        direct = np.asarray(jax.jit(ops.conv_transpose2d_stride2)(x, w))
    scale = np.max(np.abs(exact))
    err, err_direct = np.max(np.abs(got - exact)), np.max(np.abs(direct - exact))
    assert got.shape == exact.shape
    assert err <= max(4 * err_direct, 4 * np.finfo(np.float32).eps * scale), (err, err_direct)


def test_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="even H, W"):
        winograd.conv3x3(jnp.zeros((1, 5, 4, 2)), jnp.zeros((3, 3, 2, 2)))
    with pytest.raises(ValueError, match="3x3 kernel"):
        winograd.conv3x3(jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 1, 2, 2)))


def test_used_only_where_measured_faster():
    on_cpu = jax.default_backend() == "cpu"
    c, large = winograd.MIN_CHANNELS, winograd.LARGE_SIZE
    assert winograd.use_winograd((1, 16, 16, c), (3, 3, c, c)) == on_cpu
    narrow = winograd.MIN_CHANNELS_LARGE
    assert winograd.use_winograd((1, large, large, narrow), (3, 3, narrow, c)) == on_cpu
    assert not winograd.use_winograd((1, large // 2, large, narrow), (3, 3, narrow, c))
    assert not winograd.use_winograd((1, 16, 16, c), (3, 3, c, narrow // 2))  # narrow output
    assert not winograd.use_winograd((1, 15, 16, c), (3, 3, c, c))  # odd height
    assert not winograd.use_winograd((1, 16, 16, c), (1, 1, c, c))  # toRGB
    assert not winograd.use_winograd((1, 16, 16, c), (3, 3, c, c), jnp.bfloat16)


def test_golden_generator_matches_the_official_outputs_with_winograd_everywhere(
        golden_G, sg2_ref, winograd_everywhere):
    """With the measured thresholds at 1, every 3x3 same-size conv and every up conv of
    the golden model's synthesis (most of which the thresholds leave direct: 4-32 px at
    32-64 channels) runs as Winograd, and the images still match the official ones to
    the golden tolerance."""
    calls = winograd_everywhere
    ws = sg2_ref["ws_psi07"]
    with jax.default_matmul_precision("highest"):
        img = np.asarray(jax.jit(lambda s, ws: sg.synthesis(golden_G.graphdef, s, ws))(
            golden_G.state, ws))
    # one conv1 per block: 4, 8, 16 and 32 px
    assert sorted(s[1] for s in calls) == [4, 8, 16, 32]
    assert sorted(s[1] for s in calls.up) == [4, 8, 16]  # conv0 into 8, 16 and 32 px
    ref = sg2_ref["img_psi07_const"].transpose(0, 2, 3, 1)
    assert np.max(np.abs(img - ref)) / np.max(np.abs(ref)) <= 1e-4
    # And the op the generator calls dispatches to it.
    x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
    calls.clear()
    ops.conv2d(x, w)
    assert calls == [(1, 4, 4, 2)]
    calls.up.clear()
    ops.conv2d_up2(x, w, ops.fir_filter([1, 3, 3, 1]))
    assert calls.up == [(1, 4, 4, 2)]


def test_prepared_weights_give_the_same_images_and_follow_changed_weights(
        winograd_everywhere):
    """A Generator computes its convs' derived weights once (``sg.prepare``): every form
    (Winograd kernels, up conv Winograd kernels, demodulation sums; thresholds at 1) gives
    the images of computing them inside the step, bit for bit, and a Generator built from
    changed weights re-derives them (the old derived arrays are not reused)."""
    cfg = sg.StyleGAN2Config.create(z_dim=8, w_dim=8, img_resolution=16, channel_base=64,
                                    channel_max=4, mapping_layers=1)
    graphdef, state = sg.init(cfg, jax.random.key(3))
    G = sg.Generator(cfg, graphdef, state)
    derived = [layer.derived.get_value() for layer in nnx.merge(G.graphdef, G.state)
               .conv_layers()]
    assert {k for d in derived for k in d} == {"sq_taps", "winograd", "up_winograd"}
    ws = np.random.default_rng(0).standard_normal((2, cfg.num_ws, cfg.w_dim), np.float32)
    render = jax.jit(sg.synthesis, static_argnums=0)
    np.testing.assert_array_equal(render(G.graphdef, G.state, ws), render(graphdef, state, ws))
    shifted = jax.tree.map(lambda x: x + 0.25, G.state)  # weights and stale derived arrays
    G2 = sg.Generator(cfg, G.graphdef, shifted)
    raw2 = jax.tree.map(lambda x: x + 0.25, state)
    np.testing.assert_array_equal(render(G2.graphdef, G2.state, ws), render(graphdef, raw2, ws))
    assert jax.tree.structure(sg.stored_weights(G2.state)) == jax.tree.structure(state)


def test_up_conv_used_only_where_measured_faster():
    on_cpu = jax.default_backend() == "cpu"
    s, i, o = winograd.UP_MIN_SIZE, winograd.UP_MIN_IN, winograd.UP_MIN_OUT
    assert winograd.use_winograd_up((1, s, s, i), (3, 3, i, o)) == on_cpu
    assert not winograd.use_winograd_up((1, s // 2, s, i), (3, 3, i, o))  # small image
    assert not winograd.use_winograd_up((1, s, s, i // 2), (3, 3, i // 2, o))
    assert not winograd.use_winograd_up((1, s, s, i), (3, 3, i, o // 2))
    assert not winograd.use_winograd_up((1, s, s, i), (3, 3, i, o), jnp.bfloat16)


def test_synthesis_executes_fewer_flops_than_the_architecture_on_wide_layers():
    """128 channels everywhere (compiled, not run): XLA's count is the architecture's less
    the 20 of 36 products Winograd saves on every conv1, plus its transforms' adds (< 5 %)."""
    cfg = sg.StyleGAN2Config.create(z_dim=32, w_dim=32, img_resolution=16,
                                    channel_base=1 << 14, channel_max=128, mapping_layers=2)
    assert set(cfg.channels) == {winograd.MIN_CHANNELS}
    graphdef, state = sg.abstract(cfg)
    n = 2
    ws = jax.ShapeDtypeStruct((n, cfg.num_ws, cfg.w_dim), jnp.float32)
    flops = roofline.compiled_flops(lambda s, ws: sg.synthesis(graphdef, s, ws), state, ws)
    arch = sg.architecture_flops(cfg)["synthesis"]
    conv1 = sum(2 * r * r * 9 * cfg.channels_at(r) ** 2 for r in cfg.block_resolutions)
    expected = (arch - conv1 * 20 / 36) / arch
    assert expected <= flops / n / arch <= expected + 0.05
