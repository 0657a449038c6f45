"""torchvision-style ResNet with basic blocks (FairFace ResNet-34 and small variants), inference.

Modules are named after torchvision's state-dict keys (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``/``.1``, ``fc``) so the importer only transposes: conv weights are
HWIO ``[k, k, in, out]``, ``fc.weight`` is ``[in, out]``; activations are NHWC.

BatchNorm runs in inference mode on the stored running statistics (eps 1e-5 as torch).
Padding is explicit and symmetric like torch's (stem 7x7/2 pad 3, 3x3 convs pad 1, 1x1
downsample convs pad 0, max-pool 3x3/2 pad 1 with -inf): Flax's 'SAME' would pad stride-2
layers unevenly and shift every feature map by half a pixel.

The pure entry point is ``logits(graphdef, state, x)``: weights are an argument, so one
compiled function serves any weights of the same architecture.

Precision follows the input: float32 inputs compute in float32 (the checkpoint's own
arithmetic); bfloat16 (or float16) inputs run every convolution in that dtype, with the
stored float32 weights cast where they are used (once per call). BatchNorm and the global
average pool always compute in float32: inference BatchNorm subtracts a running mean of the
same magnitude as the activations (cancellation in bf16's 8-bit mantissa), and the pool sums
up to 49 x 512 values per image. Features and logits are therefore float32.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfair import keys
from jaxfair.models import winograd


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """Architecture of a basic-block ResNet; hashable, read from checkpoint shapes.

    Attributes:
      stage_sizes: blocks per stage (ResNet-34: 3, 4, 6, 3).
      widths: output channels per stage (ResNet-34: 64, 128, 256, 512). Stage 1 has stride 1,
        later stages stride 2.
      stem_width: output channels of the 7x7 stem (torchvision: 64).
      num_outputs: size of the ``fc`` head.
      in_channels: input channels (3).
      bn_eps: BatchNorm epsilon (torch default 1e-5).
    """

    stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    num_outputs: int = 18
    in_channels: int = 3
    bn_eps: float = 1e-5

    def __post_init__(self):
        if len(self.stage_sizes) != len(self.widths) or not self.stage_sizes:
            raise ValueError(f"need one width per stage, got stage_sizes {self.stage_sizes} "
                             f"and widths {self.widths}")
        if min(self.stage_sizes) < 1:
            raise ValueError(f"every stage needs at least one block, got {self.stage_sizes}")

    @classmethod
    def resnet34(cls, num_outputs: int = 18) -> ResNetConfig:
        """torchvision resnet34 (FairFace uses it with an 18-way head)."""
        return cls((3, 4, 6, 3), (64, 128, 256, 512), 64, num_outputs)

    @classmethod
    def resnet18(cls, num_outputs: int = 1000) -> ResNetConfig:
        return cls((2, 2, 2, 2), (64, 128, 256, 512), 64, num_outputs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ResNetConfig:
        d = dict(d)
        for k in ("stage_sizes", "widths"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def compute_dtype(x: jax.Array) -> jnp.dtype:
    """The dtype a network runs in for input x: bfloat16/float16 as given, else float32."""
    if x.dtype in (jnp.bfloat16, jnp.float16):
        return x.dtype
    return jnp.dtype(jnp.float32)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """torch ``MaxPool2d(3, 2, padding=1)`` on NHWC: padding is -inf, never a value."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                 ((0, 0), (1, 1), (1, 1), (0, 0)))


class Conv2d(nnx.Module):
    """Bias-free conv, weight HWIO, explicit symmetric padding (torch ``Conv2d(bias=False)``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, stride: int = 1,
                 padding: int = 0, rngs: nnx.Rngs):
        fan_in = in_channels * kernel * kernel
        # He init (torchvision's kaiming_normal_ uses fan_out; any scale works for inference).
        self.weight = nnx.Param(keys.normal(
            rngs.params(), (kernel, kernel, in_channels, out_channels)) * math.sqrt(2 / fan_in))
        self.stride = stride
        self.padding = padding

    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.padding
        w = self.weight[...]
        # Same-size 3x3 convs on wide channels: Winograd where measured faster (CPU, float32,
        # >= 128 channels; FairFace ResNet-34 at 224 px, batch 16: 1.25x; docs/performance.md).
        if self.stride == 1 and p == 1 and winograd.use_winograd(x.shape, w.shape, x.dtype):
            return winograd.conv3x3(x, w.astype(x.dtype))
        return jax.lax.conv_general_dilated(
            x, w.astype(x.dtype), (self.stride, self.stride), ((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"))


class BatchNorm2d(nnx.Module):
    """Inference BatchNorm: ``(x - running_mean) / sqrt(running_var + eps) * weight + bias``."""

    def __init__(self, channels: int, *, eps: float = 1e-5):
        self.weight = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.running_mean = nnx.BatchStat(jnp.zeros((channels,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((channels,), jnp.float32))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [N, H, W, C] in any float dtype -> same dtype; computed in float32."""
        scale = self.weight[...] * jax.lax.rsqrt(self.running_var[...] + self.eps)
        y = (x.astype(jnp.float32) - self.running_mean[...]) * scale + self.bias[...]
        return y.astype(x.dtype)


class Linear(nnx.Module):
    """``y = x @ weight + bias`` with weight ``[in, out]``."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.weight = nnx.Param(keys.normal(rngs.params(), (in_features, out_features))
                                / math.sqrt(in_features))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.weight[...] + self.bias[...]


class BasicBlock(nnx.Module):
    """conv3x3(stride)-bn-relu-conv3x3-bn, plus identity or 1x1(stride)-bn shortcut, relu."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, eps: float,
                 rngs: nnx.Rngs):
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, rngs=rngs)
        self.bn1 = BatchNorm2d(out_channels, eps=eps)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, rngs=rngs)
        self.bn2 = BatchNorm2d(out_channels, eps=eps)
        # torchvision adds the projection exactly when the shape changes.
        if stride != 1 or in_channels != out_channels:
            self.downsample = nnx.List([
                Conv2d(in_channels, out_channels, 1, stride=stride, rngs=rngs),
                BatchNorm2d(out_channels, eps=eps)])
        else:
            self.downsample = None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        return jax.nn.relu(y + shortcut)


class ResNet(nnx.Module):
    """x [N, H, W, in_channels] (normalised) -> logits [N, num_outputs]."""

    def __init__(self, cfg: ResNetConfig, *, rngs: nnx.Rngs):
        self.conv1 = Conv2d(cfg.in_channels, cfg.stem_width, 7, stride=2, padding=3, rngs=rngs)
        self.bn1 = BatchNorm2d(cfg.stem_width, eps=cfg.bn_eps)
        in_ch = cfg.stem_width
        for s, (n, width) in enumerate(zip(cfg.stage_sizes, cfg.widths)):
            blocks = []
            for i in range(n):
                stride = 2 if s > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_ch, width, stride, eps=cfg.bn_eps, rngs=rngs))
                in_ch = width
            setattr(self, f"layer{s + 1}", nnx.List(blocks))
        self.fc = Linear(in_ch, cfg.num_outputs, rngs=rngs)
        self.num_stages = len(cfg.stage_sizes)

    def features(self, x: jax.Array) -> jax.Array:
        """x [N, H, W, C] -> globally average-pooled features [N, widths[-1]] float32.

        The network computes in x's dtype when it is bfloat16 or float16, else in float32.
        """
        x = x.astype(compute_dtype(x))
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        x = max_pool_3x3_s2(x)
        for s in range(self.num_stages):
            for block in getattr(self, f"layer{s + 1}"):
                x = block(x)
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc(self.features(x))


def init(cfg: ResNetConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Randomly initialised ResNet (He-normal convs, identity BatchNorm), as (graphdef, state)."""
    return nnx.split(ResNet(cfg, rngs=nnx.Rngs(params=key)))


def abstract(cfg: ResNetConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of ShapeDtypeStructs) without allocating weights."""
    return nnx.split(nnx.eval_shape(lambda: ResNet(cfg, rngs=nnx.Rngs(params=0))))


def num_params(state: nnx.State) -> int:
    """Number of parameters (torch ``sum(p.numel() for p in model.parameters())``)."""
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(state.filter(nnx.Param))))


def logits(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array) -> jax.Array:
    """Normalised images x [N, H, W, C] -> logits [N, num_outputs] (pure)."""
    return nnx.merge(graphdef, state)(x)
