"""DeepFace VGG-Face classifiers: naive numpy forward, backbone sharing, shapes and names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxfair import keys
from jaxfair.models import vggface

logits_jit = jax.jit(vggface.logits, static_argnums=0)

# Reduced widths and a 64-px input (fc6 is then 2x2 instead of 7x7); same topology.
TINY_BLOCKS = ((4, 4), (6, 6), (8, 8, 8), (8, 8, 8), (8, 8, 8))
TINY = vggface.VGGFaceConfig(blocks=TINY_BLOCKS, fc_width=16, input_size=64,
                             heads=("race", "gender", "age"), head_sizes=(6, 2, 101),
                             head_backbone=(0, 1, 0))


def random_pure(cfg, seed):
    """Random kernels (He scale) and biases in numpy, shaped like the module state."""
    rng = np.random.default_rng(seed)
    _, abstract = vggface.abstract(cfg)

    def draw(path, spec):
        if path[-1].key == "bias":
            return rng.normal(0, 0.1, spec.shape).astype(np.float32)
        fan_in = np.prod(spec.shape[:-1])
        return rng.normal(0, np.sqrt(2 / fan_in), spec.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(abstract))


def build(cfg, pure):
    graphdef, state = vggface.abstract(cfg)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, pure))
    return graphdef, state


def np_conv(x, k, b, pad):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh = k.shape[0]
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kh + 1
    out = np.zeros((x.shape[0], ho, wo, k.shape[3])) + b
    for i in range(kh):
        for j in range(kh):
            out += x[:, i:i + ho, j:j + wo] @ k[i, j]
    return out


def np_backbone(p, blocks, x):
    """Keras VGG-Face: [ZeroPadding2D(1), Conv2D 3x3 relu]*n, MaxPooling2D(2); fc6, fc7."""
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    for b, widths in enumerate(blocks):
        for i in range(len(widths)):
            c = p[f"conv{b + 1}_{i + 1}"]
            x = relu(np_conv(x, c["kernel"], c["bias"], 1))
        n, h, w, ch = x.shape
        x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, ch).max(axis=(2, 4))
    x = relu(np_conv(x, p["fc6"]["kernel"], p["fc6"]["bias"], 0))
    return relu(np_conv(x, p["fc7"]["kernel"], p["fc7"]["bias"], 0))


def np_head(p, feat):
    return np_conv(feat, p["kernel"], p["bias"], 0).reshape(feat.shape[0], -1)


@pytest.fixture(scope="module")
def tiny():
    pure = random_pure(TINY, 0)
    return pure, build(TINY, pure)


def test_state_names_follow_vgg_face(tiny):
    pure, _ = tiny
    assert set(pure) == {"backbones", "race", "gender", "age"}
    assert sorted(pure["backbones"]) == [0, 1]
    names = set(pure["backbones"][0])
    assert names == {"conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2",
                     "conv3_3", "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2",
                     "conv5_3", "fc6", "fc7"}
    assert pure["backbones"][0]["fc6"]["kernel"].shape == (2, 2, 8, 16)
    assert pure["age"]["kernel"].shape == (1, 1, 16, 101)


def test_real_config_geometry():
    cfg = vggface.VGGFaceConfig(heads=("race", "gender", "age"), head_sizes=(6, 2, 101),
                                head_backbone=(0, 1, 2))
    assert cfg.fc6_kernel == 7 and cfg.num_backbones == 3 and cfg.num_outputs == 109
    _, state = vggface.abstract(vggface.VGGFaceConfig())
    n = sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.to_pure_dict(state)))
    # VGG-Face up to fc7 (134,260,544) + a 4096 -> 6 head.
    assert n == 134_260_544 + 4096 * 6 + 6
    assert vggface.VGGFaceConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="multiple of 32"):
        vggface.VGGFaceConfig(input_size=100)
    with pytest.raises(ValueError, match="backbones 0..n-1"):
        vggface.VGGFaceConfig(heads=("race", "age"), head_sizes=(6, 101), head_backbone=(0, 2))


def test_matches_naive_numpy(tiny):
    pure, (graphdef, state) = tiny
    x = np.asarray(keys.uniform(jax.random.key(1), (2, 64, 64, 3)))
    with jax.default_matmul_precision("highest"):
        out = np.asarray(logits_jit(graphdef, state, x))
    p64 = jax.tree.map(lambda a: a.astype(np.float64), pure)
    x64 = x.astype(np.float64)
    feats = [np_backbone(p64["backbones"][i], TINY_BLOCKS, x64) for i in (0, 1)]
    ref = np.concatenate([np_head(p64["race"], feats[0]), np_head(p64["gender"], feats[1]),
                          np_head(p64["age"], feats[0])], axis=1)
    assert out.shape == (2, 109)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    with jax.default_matmul_precision("highest"):
        f = np.asarray(nnx.merge(graphdef, state).features(jnp.asarray(x)))
    np.testing.assert_allclose(f, feats[0].reshape(2, -1), rtol=1e-4,
                               atol=1e-4 * np.abs(feats[0]).max())


def test_shared_backbone_equals_copies(tiny):
    """One shared backbone gives exactly what separate copies of its weights give."""
    pure, _ = tiny
    shared_cfg = vggface.VGGFaceConfig(blocks=TINY_BLOCKS, fc_width=16, input_size=64,
                                       heads=("race", "gender"), head_sizes=(6, 2),
                                       head_backbone=(0, 0))
    split_cfg = vggface.VGGFaceConfig(blocks=TINY_BLOCKS, fc_width=16, input_size=64,
                                      heads=("race", "gender"), head_sizes=(6, 2),
                                      head_backbone=(0, 1))
    bb = pure["backbones"][0]
    shared = {"backbones": {0: bb}, "race": pure["race"], "gender": pure["gender"]}
    split = {"backbones": {0: bb, 1: bb}, "race": pure["race"], "gender": pure["gender"]}
    x = keys.uniform(jax.random.key(2), (3, 64, 64, 3))
    a = np.asarray(logits_jit(*build(shared_cfg, shared), x))
    b = np.asarray(logits_jit(*build(split_cfg, split), x))
    np.testing.assert_array_equal(a, b)


def test_wrong_input_size_is_refused(tiny):
    _, (graphdef, state) = tiny
    with pytest.raises(ValueError, match="expected inputs of 64x64"):
        vggface.logits(graphdef, state, jnp.zeros((1, 96, 96, 3)))


def test_apparent_age_is_expectation():
    p = jax.nn.softmax(jax.random.normal(jax.random.key(3), (4, 101)), axis=-1)
    ref = (np.asarray(p) * np.arange(101)).sum(-1)
    np.testing.assert_allclose(vggface.apparent_age(p), ref, rtol=1e-5)
    one_hot = jax.nn.one_hot(jnp.array([0, 37, 100]), 101)
    np.testing.assert_allclose(vggface.apparent_age(one_hot), [0, 37, 100])
