"""The StyleGAN2 port against the official implementation's outputs (golden fixtures)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxfair
from jaxfair import roofline
from jaxfair.models import stylegan2 as sg

CASES = [  # (psi, cutoff, ws key, noise mode, image key)
    (1.0, None, "ws_psi1", "const", "img_psi1_const"),
    (0.7, None, "ws_psi07", "const", "img_psi07_const"),
    (0.7, None, "ws_psi07", "none", "img_psi07_none"),
    (0.5, 4, "ws_psi05_cut4", "const", "img_psi05_cut4_const"),
]


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


def rel_err(got, ref):
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


def test_config_read_from_pickle(golden_G):
    c = golden_G.config
    assert (c.z_dim, c.w_dim, c.img_resolution, c.mapping_layers) == (48, 32, 32, 8)
    assert c.channels == (64, 64, 64, 32)  # channel_base 1024, channel_max 64
    assert c.num_ws == 8 and c.conv_clamp is None and c.mapping_lr_mul == 0.01


@pytest.mark.parametrize("psi,cutoff,ws_key,noise,img_key", CASES)
def test_golden_parity(golden_G, sg2_ref, psi, cutoff, ws_key, noise, img_key):
    ws = np.asarray(golden_G.mapping(sg2_ref["z"], truncation_psi=psi,
                                     truncation_cutoff=cutoff))
    assert np.max(np.abs(ws - sg2_ref[ws_key])) <= 1e-5
    ref = sg2_ref[img_key].transpose(0, 2, 3, 1)  # official NCHW -> NHWC
    img = np.asarray(golden_G.synthesis(sg2_ref[ws_key], noise_mode=noise))
    assert img.shape == (4, 32, 32, 3) and img.dtype == np.float32
    assert rel_err(img, ref) <= 1e-4
    # End to end through G(z) as well.
    img = np.asarray(golden_G(sg2_ref["z"], psi, cutoff, noise_mode=noise))
    assert rel_err(img, ref) <= 1e-4


def test_noise_modes_differ_and_random_is_keyed(golden_G, sg2_ref):
    ws = sg2_ref["ws_psi07"]
    const = np.asarray(golden_G.synthesis(ws, "const"))
    none = np.asarray(golden_G.synthesis(ws, "none"))
    r1 = np.asarray(golden_G.synthesis(ws, "random", key=jax.random.key(1)))
    r1b = np.asarray(golden_G.synthesis(ws, "random", key=jax.random.key(1)))
    r2 = np.asarray(golden_G.synthesis(ws, "random", key=jax.random.key(2)))
    np.testing.assert_array_equal(r1, r1b)
    for a, b in [(const, none), (r1, r2), (r1, const), (r1, none)]:
        assert np.max(np.abs(a - b)) > 1e-3
    with pytest.raises(ValueError, match="PRNG key"):
        golden_G.synthesis(ws, "random")
    with pytest.raises(ValueError, match="noise_mode"):
        golden_G.synthesis(ws, "fixed")


def test_random_noise_is_independent_per_sample(golden_G, sg2_ref):
    """A sample's random-noise image depends on its batch position, not only on the key.
    (The batch has the golden batch's shape: the random-noise program compiled above.)"""
    ws = np.repeat(sg2_ref["ws_psi07"][:1], len(sg2_ref["ws_psi07"]), axis=0)
    img = np.asarray(golden_G.synthesis(ws, "random", key=jax.random.key(0)))
    for i in range(1, len(img)):
        assert np.max(np.abs(img[0] - img[i])) > 1e-3


def test_batch_equals_per_item(golden_G, sg2_ref):
    ws = sg2_ref["ws_psi07"]
    batch = np.asarray(golden_G.synthesis(ws))
    for i in range(len(ws)):
        np.testing.assert_allclose(np.asarray(golden_G.synthesis(ws[i:i + 1]))[0], batch[i],
                                   atol=1e-5)


def test_vmap_over_searches(golden_G, sg2_ref):
    """The pure functions vmap: [S, P] latents render like the flat batch."""
    z = jnp.asarray(sg2_ref["z"]).reshape(2, 2, -1)

    def render(zs):
        ws = sg.mapping(golden_G.graphdef, golden_G.state, zs, 0.7)
        return sg.synthesis(golden_G.graphdef, golden_G.state, ws)

    out = jax.jit(jax.vmap(render))(z).reshape(4, 32, 32, 3)
    ref = sg2_ref["img_psi07_const"].transpose(0, 2, 3, 1)
    assert rel_err(np.asarray(out), ref) <= 1e-4


def test_one_trace_across_truncation_settings(golden_G, sg2_ref):
    traces = []

    def counted(graphdef, state, z, psi, cutoff):
        traces.append(1)
        return sg.mapping(graphdef, state, z, psi, cutoff)

    f = jax.jit(counted, static_argnums=0)
    for psi, cut in [(1.0, 8), (0.7, 8), (0.5, 4), (0.3, 2)]:
        f(golden_G.graphdef, golden_G.state, sg2_ref["z"], jnp.float32(psi), jnp.int32(cut))
    assert len(traces) == 1


def test_early_stop_returns_skip_image(golden_G, sg2_ref):
    ws = sg2_ref["ws_psi07"]
    low = np.asarray(golden_G.synthesis(ws, resolution=16))
    assert low.shape == (4, 16, 16, 3)
    # Independent of every later block: perturbing b32 leaves the 16x16 image unchanged ...
    state = jax.tree.map(lambda x: x, golden_G.state)
    # (an additive change: demodulation would cancel a scaled weight)
    state["synthesis"]["b32"]["conv1"]["bias"].value = (
        state["synthesis"]["b32"]["conv1"]["bias"].value + 1.0)
    other = sg.Generator(golden_G.config, golden_G.graphdef, state)
    np.testing.assert_array_equal(np.asarray(other.synthesis(ws, resolution=16)), low)
    assert np.max(np.abs(np.asarray(other.synthesis(ws)) - np.asarray(golden_G.synthesis(ws)))
                  ) > 1e-3
    # ... and the full image is the 2x upsampled low one plus the last block's ToRGB: the
    # low-resolution skip image carries the coarse content.
    full = np.asarray(golden_G.synthesis(ws, resolution=32))
    np.testing.assert_allclose(full, np.asarray(golden_G.synthesis(ws)), atol=1e-6)
    coarse = full.reshape(4, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    assert np.corrcoef(coarse.ravel(), low.ravel())[0, 1] > 0.5
    with pytest.raises(ValueError, match="resolution"):
        golden_G.synthesis(ws, resolution=12)


def test_ffhq1024_preset_parameter_count():
    cfg = jaxfair.StyleGAN2Config.ffhq_1024()
    _, state = sg.abstract(cfg)
    assert sg.num_params(state) == 30_370_060
    assert cfg.num_ws == 18
    assert cfg.channels == (512, 512, 512, 512, 512, 256, 128, 64, 32)


def test_presets_512_256():
    c512, c256 = jaxfair.StyleGAN2Config.ffhq_512(), jaxfair.StyleGAN2Config.ffhq_256()
    assert (c512.num_ws, c256.num_ws) == (16, 14)
    assert c512.channels[-1] == 64 and c256.channels == (512, 512, 512, 512, 256, 128, 64)
    assert c512.conv_clamp == c256.conv_clamp == 256.0


def test_conv_clamp_is_applied():
    cfg = sg.StyleGAN2Config.create(z_dim=8, w_dim=8, img_resolution=8, channel_base=64,
                                    channel_max=8, conv_clamp=0.05)
    G = sg.Generator.random(cfg, jax.random.key(0))
    img = np.asarray(G(np.random.default_rng(0).standard_normal((2, 8)) * 10))
    # The last ToRGB output is clamped; the skip sum of two clamped images is within 2*clamp.
    assert np.max(np.abs(img)) <= 2 * 0.05 + 1e-6
    unclamped = sg.Generator(sg.StyleGAN2Config.create(
        z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8), G.graphdef,
        G.state)
    assert unclamped.config.conv_clamp is None


def test_ffhq1024_preset_renders():
    # ~25 s on 2 CPU cores (30 M parameters, a full 1024x1024 forward pass).
    G = sg.Generator.random(jaxfair.StyleGAN2Config.ffhq_1024(), jax.random.key(0))
    img = G(jax.random.normal(jax.random.key(1), (1, 512)), truncation_psi=0.7)
    assert img.shape == (1, 1024, 1024, 3) and bool(jnp.all(jnp.isfinite(img)))


def test_architecture_flops_of_the_real_models():
    # REFERENCE cost figures: 14.9 GMAC (FFHQ-256 paper256), 74.3 GMAC (FFHQ-1024) of
    # convolutions; the rest (FIR, affine, toRGB) adds ~1 %.
    f256 = sg.architecture_flops(sg.StyleGAN2Config.ffhq_256())
    f1024 = sg.architecture_flops(sg.StyleGAN2Config.ffhq_1024())
    assert f256["conv"] / 2e9 == pytest.approx(14.9, abs=0.05)
    assert f1024["conv"] / 2e9 == pytest.approx(74.3, abs=0.3)
    for f in (f256, f1024):
        assert f["synthesis"] == pytest.approx(f["conv"] + f["fir"] + f["affine"] + f["torgb"])
        assert 1.0 < f["synthesis"] / f["conv"] < 1.02
    assert f1024["mapping"] == 2 * 8 * 512 * 512


@pytest.mark.parametrize("res,base", [(64, 1024), (128, 2048)])
def test_synthesis_executes_the_architectural_flops(res, base, direct_convs):
    """No wasted work in the direct forms: XLA's count of the compiled synthesis within
    5 % of the architecture's (the up conv as 9 MACs per input pixel, not 16 of padded
    phases). Compiled, not run. XLA does not count the taps on the zero border of a conv, the
    convention does: below 64 pixels the border alone is > 5 %."""
    cfg = sg.StyleGAN2Config.create(z_dim=32, w_dim=32, img_resolution=res,
                                    channel_base=base, channel_max=64, mapping_layers=2)
    graphdef, state = sg.abstract(cfg)
    n = 2
    ws = jax.ShapeDtypeStruct((n, cfg.num_ws, cfg.w_dim), jnp.float32)
    flops = roofline.compiled_flops(lambda s, ws: sg.synthesis(graphdef, s, ws), state, ws)
    arch = sg.architecture_flops(cfg)["synthesis"]
    assert 0.95 < flops / n / arch < 1.05
