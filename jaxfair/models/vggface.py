"""DeepFace demographic classifiers: VGG-Face backbone + 1x1-conv heads, inference only.

serengil/deepface builds race, gender and age models the same way: the VGG-Face network
(``VGGFace.base_model``) up to its fc7 dropout (``model.layers[-4]``), then
``Conv2D(K, (1, 1), name='predictions')``, ``Flatten``, ``Activation('softmax')``:

  5 blocks of [ZeroPadding2D(1) + Conv2D(3x3) relu] x (2, 2, 3, 3, 3) with widths
  64, 128, 256, 512, 512, each block followed by MaxPooling2D(2x2, stride 2);
  fc6 = Conv2D(4096, 7x7) relu (valid: 7x7 -> 1x1), dropout; fc7 = Conv2D(4096, 1x1) relu,
  dropout; head = Conv2D(K, 1x1) -> flatten -> softmax.

Heads: race K=6 (asian, indian, black, white, middle eastern, latino hispanic), gender K=2
(Woman, Man), age K=101 (apparent age = sum_i i * p_i, ``apparent_age``). One module holds
any subset of heads; heads whose backbones have identical weights share one backbone at run
time (``VGGFaceConfig.head_backbone``), others keep their own.

Input: 224x224 BGR in [0, 1] without mean subtraction (DeepFace ``analyze``; see
``jaxfair.judge.preprocess.Preprocess.deepface``), NHWC. Kernels keep Keras's HWIO layout and
names (``kernel``, ``bias``); layers are named after the VGG-Face paper
(``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``), heads after their attribute.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfair import keys

VGG_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


@dataclasses.dataclass(frozen=True)
class VGGFaceConfig:
    """Architecture of a DeepFace classifier; hashable, read from the .h5 weight shapes.

    Attributes:
      blocks: output channels of each 3x3 conv, grouped by pooling block.
      fc_width: channels of fc6 and fc7 (4096).
      input_size: input side; fc6's kernel is ``input_size / 2**len(blocks)`` (7 at 224).
      in_channels: input channels (3).
      heads: attribute name of each head, in output order ('race', 'gender', 'age').
      head_sizes: classes per head.
      head_backbone: index of the backbone each head reads (equal weights share one).
    """

    blocks: tuple[tuple[int, ...], ...] = VGG_BLOCKS
    fc_width: int = 4096
    input_size: int = 224
    in_channels: int = 3
    heads: tuple[str, ...] = ("race",)
    head_sizes: tuple[int, ...] = (6,)
    head_backbone: tuple[int, ...] = (0,)

    def __post_init__(self):
        if self.input_size % 2 ** len(self.blocks):
            raise ValueError(f"input_size {self.input_size} is not a multiple of "
                             f"{2 ** len(self.blocks)}")
        if not self.heads or not (len(self.heads) == len(self.head_sizes)
                                  == len(self.head_backbone)):
            raise ValueError("heads, head_sizes and head_backbone need one entry per head")
        if len(set(self.heads)) != len(self.heads):
            raise ValueError(f"duplicate heads {self.heads}")
        if sorted(set(self.head_backbone)) != list(range(self.num_backbones)):
            raise ValueError(f"head_backbone {self.head_backbone} must use backbones 0..n-1")

    @property
    def fc6_kernel(self) -> int:
        return self.input_size // 2 ** len(self.blocks)

    @property
    def num_backbones(self) -> int:
        return max(self.head_backbone) + 1

    @property
    def num_outputs(self) -> int:
        return sum(self.head_sizes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VGGFaceConfig:
        d = dict(d)
        d["blocks"] = tuple(tuple(b) for b in d["blocks"])
        for k in ("heads", "head_sizes", "head_backbone"):
            d[k] = tuple(d[k])
        return cls(**d)


class Conv(nnx.Module):
    """Keras ``Conv2D`` (kernel HWIO + bias), with symmetric zero padding and optional relu."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, padding: int = 0,
                 relu: bool = True, rngs: nnx.Rngs):
        fan_in = in_channels * kernel * kernel
        self.kernel = nnx.Param(keys.normal(
            rngs.params(), (kernel, kernel, in_channels, out_channels)) * math.sqrt(2 / fan_in))
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32))
        self.padding = padding
        self.relu = relu

    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.padding
        y = jax.lax.conv_general_dilated(x, self.kernel[...], (1, 1), ((p, p), (p, p)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y + self.bias[...]
        return jax.nn.relu(y) if self.relu else y


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """Keras ``MaxPooling2D((2, 2), strides=(2, 2))`` ('valid': odd edges dropped)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


class Backbone(nnx.Module):
    """VGG-Face up to fc7: x [N, S, S, 3] -> [N, 1, 1, fc_width] (after relu)."""

    def __init__(self, cfg: VGGFaceConfig, *, rngs: nnx.Rngs):
        in_ch = cfg.in_channels
        for b, widths in enumerate(cfg.blocks):
            for i, width in enumerate(widths):
                name = f"conv{b + 1}_{i + 1}"
                setattr(self, name, Conv(in_ch, width, 3, padding=1, rngs=rngs))
                in_ch = width
        self.block_lengths = tuple(len(w) for w in cfg.blocks)
        self.fc6 = Conv(in_ch, cfg.fc_width, cfg.fc6_kernel, rngs=rngs)
        self.fc7 = Conv(cfg.fc_width, cfg.fc_width, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for b, n in enumerate(self.block_lengths):
            for i in range(n):
                x = getattr(self, f"conv{b + 1}_{i + 1}")(x)
            x = max_pool_2x2(x)
        # Dropout after fc6 and fc7 is the identity at inference.
        return self.fc7(self.fc6(x))


class DeepFace(nnx.Module):
    """Normalised x [N, S, S, 3] -> concatenated head logits [N, sum(head_sizes)]."""

    def __init__(self, cfg: VGGFaceConfig, *, rngs: nnx.Rngs):
        self.backbones = nnx.List([Backbone(cfg, rngs=rngs) for _ in range(cfg.num_backbones)])
        for name, size in zip(cfg.heads, cfg.head_sizes):
            setattr(self, name, Conv(cfg.fc_width, size, 1, relu=False, rngs=rngs))
        self.heads = cfg.heads
        self.head_backbone = cfg.head_backbone
        self.input_size = cfg.input_size

    def features(self, x: jax.Array) -> jax.Array:
        """Normalised x -> the first backbone's fc7 activations [N, fc_width] (pure)."""
        self._check(x)
        return self.backbones[0](x.astype(jnp.float32)).reshape(x.shape[0], -1)

    def _check(self, x: jax.Array) -> None:
        if x.shape[1:3] != (self.input_size, self.input_size):
            # fc6 is a valid conv: a larger input would give a spatial map, not a vector.
            raise ValueError(f"expected inputs of {self.input_size}x{self.input_size}, got "
                             f"{x.shape[1:3]}")

    def __call__(self, x: jax.Array) -> jax.Array:
        self._check(x)
        x = x.astype(jnp.float32)
        feats = [bb(x) for bb in self.backbones]
        out = [getattr(self, h)(feats[i]).reshape(x.shape[0], -1)
               for h, i in zip(self.heads, self.head_backbone)]
        return jnp.concatenate(out, axis=-1)


def init(cfg: VGGFaceConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Randomly initialised model (He-normal kernels, zero biases), as (graphdef, state)."""
    return nnx.split(DeepFace(cfg, rngs=nnx.Rngs(params=key)))


def abstract(cfg: VGGFaceConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of ShapeDtypeStructs) without allocating weights."""
    return nnx.split(nnx.eval_shape(lambda: DeepFace(cfg, rngs=nnx.Rngs(params=0))))


def logits(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> jax.Array:
    """Normalised images x [N, S, S, 3] -> logits [N, sum(head_sizes)] (pure)."""
    return nnx.merge(graphdef, state)(x)


def apparent_age(age_probs: jax.Array) -> jax.Array:
    """DeepFace's apparent age: expectation ``sum_i i * p_i`` of the 101-way head, [N]."""
    ages = jnp.arange(age_probs.shape[-1], dtype=jnp.float32)
    return jnp.sum(age_probs * ages, axis=-1)
