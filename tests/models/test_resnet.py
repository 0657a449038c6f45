"""ResNet (basic blocks): golden torchvision parity, naive numpy forward, padding, tracing."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfair import keys
from jaxfair.convert import torch_pickle
from jaxfair.convert import torchvision_resnet as tv
from jaxfair.models import resnet

logits_jit = jax.jit(resnet.logits, static_argnums=0)


@pytest.fixture(scope="module")
def golden(golden_dir):
    sd = torch_pickle.load_file(os.path.join(golden_dir, "resnet34_w16.pt"))
    cfg, flat = tv.from_state_dict(sd)
    graphdef, state = resnet.abstract(cfg)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, tv.to_params(cfg, flat)))
    ref = dict(np.load(os.path.join(golden_dir, "resnet34_w16_reference.npz")))
    return cfg, graphdef, state, ref


def test_golden_resnet34_w16(golden):
    """torchvision resnet34 (base width 16, random weights and BN stats), eval mode."""
    cfg, graphdef, state, ref = golden
    assert cfg == resnet.ResNetConfig((3, 4, 6, 3), (16, 32, 64, 128), 16, 18)
    x = ref["x_nchw"].transpose(0, 2, 3, 1)
    with jax.default_matmul_precision("highest"):
        out = np.asarray(jax.jit(resnet.logits, static_argnums=0)(graphdef, state, x))
    err = np.abs(out - ref["logits"]).max()
    assert err <= 1e-4 * np.abs(ref["logits"]).max(), err


def test_golden_resnet34_w16_with_winograd_everywhere(golden, winograd_everywhere):
    """Its channels (16-128) leave some stride-1 3x3 convs below the measured Winograd
    rule; with the thresholds at 1 every even-sized one runs as Winograd and the logits
    still match torchvision's to the golden tolerance."""
    cfg, graphdef, state, ref = golden
    x = ref["x_nchw"].transpose(0, 2, 3, 1)
    with jax.default_matmul_precision("highest"):
        out = np.asarray(jax.jit(lambda s, x: resnet.logits(graphdef, s, x))(state, x))
    assert len(winograd_everywhere) >= 8  # the stages whose maps are even-sized
    err = np.abs(out - ref["logits"]).max()
    assert err <= 1e-4 * np.abs(ref["logits"]).max(), err


def test_resnet34_preset_param_count():
    # torchvision resnet34: 21,797,672 with a 1000-way fc; FairFace's fc is 512 -> 18.
    _, state = resnet.abstract(resnet.ResNetConfig.resnet34(18))
    assert resnet.num_params(state) == 21_797_672 - (512 * 1000 + 1000) + (512 * 18 + 18)


# Naive numpy reference ---------------------------------------------------------------------

def np_conv(x, w, stride, pad):
    """x [N, H, W, I], w [k, k, I, O]: torch Conv2d (cross-correlation, zero padding)."""
    k = w.shape[0]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho = (x.shape[1] - k) // stride + 1
    wo = (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, w.shape[3]))
    for i in range(k):
        for j in range(k):
            patch = x[:, i:i + stride * ho:stride, j:j + stride * wo:stride, :]
            out += patch @ w[i, j]
    return out


def np_bn(x, p, eps=1e-5):
    return (x - p["running_mean"]) / np.sqrt(p["running_var"] + eps) * p["weight"] + p["bias"]


def np_maxpool(x):
    x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    ho, wo = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    return np.max([x[:, i:i + 2 * ho:2, j:j + 2 * wo:2] for i in range(3) for j in range(3)],
                  axis=0)


def np_resnet(p, cfg, x):
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    x = relu(np_bn(np_conv(x, p["conv1"]["weight"], 2, 3), p["bn1"]))
    x = np_maxpool(x)
    for s, n in enumerate(cfg.stage_sizes):
        for i in range(n):
            b = p[f"layer{s + 1}"][i]
            stride = 2 if s > 0 and i == 0 else 1
            y = relu(np_bn(np_conv(x, b["conv1"]["weight"], stride, 1), b["bn1"]))
            y = np_bn(np_conv(y, b["conv2"]["weight"], 1, 1), b["bn2"])
            if "downsample" in b:
                x = np_bn(np_conv(x, b["downsample"][0]["weight"], stride, 0),
                          b["downsample"][1])
            x = relu(y + x)
    return x.mean(axis=(1, 2)) @ p["fc"]["weight"] + p["fc"]["bias"]


TINY = resnet.ResNetConfig(stage_sizes=(1, 2), widths=(8, 12), stem_width=4, num_outputs=5)


def random_pure(cfg, seed):
    """Random weights with non-trivial BatchNorm statistics, in numpy (no init compiles)."""
    rng = np.random.default_rng(seed)
    _, abstract = resnet.abstract(cfg)

    def draw(path, spec):
        name = path[-1].key
        if name == "running_var":
            return rng.uniform(0.5, 2.0, spec.shape)
        if name in ("running_mean", "bias"):
            return rng.normal(0, 0.1, spec.shape)
        if name == "weight" and len(spec.shape) == 1:
            return 1 + rng.normal(0, 0.1, spec.shape)
        fan_in = np.prod(spec.shape[:-1])
        return rng.normal(0, np.sqrt(2 / fan_in), spec.shape)

    pure = jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(abstract))
    return jax.tree.map(lambda a: a.astype(np.float32), pure)


@pytest.fixture(scope="module")
def tiny():
    graphdef, state = resnet.abstract(TINY)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, random_pure(TINY, 0)))
    return graphdef, state


def test_tiny_matches_naive_numpy(tiny):
    graphdef, state = tiny
    # layer1.0 changes width (4 -> 8) at stride 1: torchvision gives it a projection.
    pure = jax.tree.map(np.asarray, nnx.to_pure_dict(state))
    assert "downsample" in pure["layer1"][0] and "downsample" not in pure["layer2"][1]
    x = np.asarray(keys.normal(jax.random.key(2), (2, 21, 19, 3)))  # odd sizes
    with jax.default_matmul_precision("highest"):
        out = np.asarray(logits_jit(graphdef, state, x))
    ref = np_resnet(jax.tree.map(lambda a: a.astype(np.float64), pure), TINY,
                    x.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_max_pool_pads_with_minus_infinity():
    x = -1.0 - keys.uniform(jax.random.key(3), (1, 6, 6, 2))  # all values < -1
    out = np.asarray(resnet.max_pool_3x3_s2(x))
    assert out.shape == (1, 3, 3, 2) and (out < -1).all()  # zero padding would give 0
    np.testing.assert_array_equal(out, np_maxpool(np.asarray(x)))


def test_batch_equals_per_item_and_one_trace(tiny):
    graphdef, state = tiny
    traces = []

    def f(g, s, x):
        traces.append(1)
        return resnet.logits(g, s, x)

    fj = jax.jit(f, static_argnums=0)
    x = keys.normal(jax.random.key(4), (3, 32, 32, 3))
    with jax.default_matmul_precision("highest"):
        batch = np.asarray(fj(graphdef, state, x))
        per_item = np.concatenate([np.asarray(resnet.logits(graphdef, state, x[i:i + 1]))
                                   for i in range(3)])
        # New weights, same architecture: no retrace (weights are arguments).
        other = jax.tree.map(lambda a: a * 1.5, state)
        changed = np.asarray(fj(graphdef, other, x))
    np.testing.assert_allclose(batch, per_item, rtol=1e-5, atol=1e-5)
    assert not np.allclose(batch, changed)
    assert len(traces) == 1


def test_random_init_matches_abstract():
    cfg = resnet.ResNetConfig((1,), (4,), 4, 3)
    graphdef, state = resnet.init(cfg, jax.random.key(0))
    _, abstract = resnet.abstract(cfg)
    shapes = lambda s: jax.tree.map(lambda a: tuple(a.shape), nnx.to_pure_dict(s))  # noqa: E731
    assert shapes(state) == shapes(abstract)
    assert np.asarray(state["layer1"][0]["bn1"]["running_var"][...]).tolist() == [1.0] * 4
    assert resnet.logits(graphdef, state, jnp.ones((1, 16, 16, 3))).shape == (1, 3)


def test_config_round_trip_and_validation():
    cfg = resnet.ResNetConfig.resnet34()
    assert resnet.ResNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="one width per stage"):
        resnet.ResNetConfig((2, 2), (8,))
