"""StyleGAN2 generator (NVIDIA config-f, 'skip' synthesis) in Flax NNX, inference only.

Modules are named after the official checkpoint keys (``mapping.fc0``,
``synthesis.b64.conv1.affine``) so importers only transpose. Arrays use JAX layouts:
FC weights [in, out], conv weights [k, k, in, out], const [4, 4, C], activations NHWC.

The pure entry points are ``mapping`` and ``synthesis``: they take the module's graphdef and
state (weights) as arguments, so one compiled function serves any weights of the same
architecture and nothing is baked into the program as a constant.

``synthesis(..., dtype='bfloat16')`` runs the feature maps and every convolution in bf16,
the float32 weights cast where they are used (once per call). Kept in float32: the mapping
network and the affine layers (styles), the demodulation coefficients (a rsqrt of a sum of
k*k*I squared weights: bf16 would leave ~3 significant digits before the rsqrt), and the
RGB skip image (the output is the sum of every block's upsampled contribution; 3 channels,
negligible cost). With the default float32 nothing changes (every cast is a no-op).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfair.models import stylegan2_ops as ops

NOISE_MODES = ("const", "random", "none")
COMPUTE_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


class Buffer(nnx.Variable):
    """A stored, non-trainable array (``w_avg``, ``noise_const``): not a parameter."""


@dataclasses.dataclass(frozen=True)
class StyleGAN2Config:
    """Architecture of a StyleGAN2 generator; hashable, read from checkpoint metadata.

    Attributes:
      z_dim, w_dim: latent sizes.
      img_resolution: output size (power of two >= 8).
      img_channels: output channels (3).
      mapping_layers: number of FC layers in the mapping network (8 for FFHQ, 2 in some).
      mapping_features: width of the hidden mapping layers (official ``layer_features``).
      mapping_lr_mul: equalized-lr multiplier of the mapping layers (0.01).
      channels: feature maps per block, for resolutions 4, 8, ..., img_resolution.
      conv_clamp: clamp of every synthesis layer output, or None.
      use_noise: whether synthesis layers have noise inputs.
      resample_filter: 1-D taps of the FIR filter (outer product, normalised).
      fp16_resolutions: blocks that ran in float16 in the source network (recorded only:
        jaxfair computes them in float32, the official ``force_fp32=True`` path).
    """

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_features: int = 512
    mapping_lr_mul: float = 0.01
    channels: tuple[int, ...] = ()
    conv_clamp: float | None = None
    use_noise: bool = True
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    fp16_resolutions: tuple[int, ...] = ()

    def __post_init__(self):
        log2 = math.log2(self.img_resolution)
        if self.img_resolution < 4 or log2 != int(log2):
            raise ValueError(f"img_resolution must be a power of two >= 4, got "
                             f"{self.img_resolution}")
        if len(self.channels) != len(self.block_resolutions):
            raise ValueError(f"channels needs one entry per block {self.block_resolutions}, "
                             f"got {self.channels}")

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        return tuple(2 ** i for i in range(2, int(math.log2(self.img_resolution)) + 1))

    @property
    def num_ws(self) -> int:
        """One w per conv layer plus one for the last ToRGB: 2 log2(res) - 2."""
        return 2 * int(math.log2(self.img_resolution)) - 2

    def channels_at(self, res: int) -> int:
        return self.channels[self.block_resolutions.index(res)]

    @staticmethod
    def channel_list(img_resolution: int, channel_base: int, channel_max: int
                     ) -> tuple[int, ...]:
        """Official channel rule ``min(channel_base // r, channel_max)`` per block."""
        n = int(math.log2(img_resolution))
        return tuple(min(channel_base // 2 ** i, channel_max) for i in range(2, n + 1))

    @classmethod
    def create(cls, *, img_resolution: int, channel_base: int = 32768,
               channel_max: int = 512, **kw) -> StyleGAN2Config:
        """Builds a config with the official channel rule."""
        kw.setdefault("mapping_features", kw.get("w_dim", 512))
        return cls(img_resolution=img_resolution,
                   channels=cls.channel_list(img_resolution, channel_base, channel_max), **kw)

    @classmethod
    def ffhq_1024(cls) -> StyleGAN2Config:
        """NVIDIA StyleGAN2 config-f FFHQ 1024 (30,370,060 parameters, no conv_clamp)."""
        return cls.create(img_resolution=1024)

    @classmethod
    def ffhq_512(cls) -> StyleGAN2Config:
        """FFHQ 512 as trained by stylegan2-ada-pytorch ('paper512': fmaps 1, clamp 256)."""
        return cls.create(img_resolution=512, conv_clamp=256.0,
                          fp16_resolutions=(64, 128, 256, 512))

    @classmethod
    def ffhq_256(cls) -> StyleGAN2Config:
        """FFHQ 256 'paper256' (fmaps 0.5: channel_base 16384, clamp 256)."""
        return cls.create(img_resolution=256, channel_base=16384, conv_clamp=256.0,
                          fp16_resolutions=(32, 64, 128, 256))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StyleGAN2Config:
        d = dict(d)
        for k in ("channels", "resample_filter", "fp16_resolutions"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

def architecture_flops(cfg: StyleGAN2Config) -> dict[str, float]:
    """FLOP per image of the architecture's arithmetic (1 MAC = 2 FLOP), what an
    implementation without wasted work executes.

    Convention:
      mapping: every FC layer in*out.
      affine: w_dim * in_channels per modulated layer (conv and toRGB).
      conv: k*k*I*O per output pixel (border taps included); the 2x up conv is the stride-2
        transposed conv, k*k*I*O per *input* pixel (each input pixel scatters one k x k
        kernel; no MAC on the zeros a zero-insertion form would convolve).
      fir: after the up conv, the 2-D filter outer(f, f) (4x4 for [1, 3, 3, 1]) on the
        O-channel output, len(f)^2 MACs per output pixel and channel (NVIDIA applies a
        4-tap filter as one non-separable 4x4 filter); the skip image's 2x up-sampling,
        len(f)^2 / 4 MACs per output pixel and channel (the filter's non-zero taps: the
        inserted zeros are not work).
      torgb: the 1x1 conv, I*img_channels per pixel.
    Demodulation coefficients, bias, noise, activation and clamps are element-wise and not
    counted (XLA's cost analysis counts them).

    Returns:
      {'mapping', 'synthesis', 'conv', 'fir', 'affine', 'torgb'}: FLOP per image;
      'synthesis' is the sum of the last four.
    """
    k, c3, w = 3, cfg.img_channels, cfg.w_dim
    taps = len(cfg.resample_filter) ** 2
    dims = [cfg.z_dim] + [cfg.mapping_features] * (cfg.mapping_layers - 1) + [cfg.w_dim]
    mac = {"mapping": sum(a * b for a, b in zip(dims[:-1], dims[1:])),
           "conv": 0, "fir": 0, "affine": 0, "torgb": 0}
    cin = 0
    for r in cfg.block_resolutions:
        c = cfg.channels_at(r)
        if cin:  # conv0: transposed conv at the input resolution, then the FIR at r
            mac["conv"] += k * k * cin * c * (r // 2) ** 2
            mac["fir"] += taps * c * r * r
            mac["affine"] += w * cin
            mac["fir"] += taps // 4 * c3 * r * r  # skip image up-sampling
        mac["conv"] += k * k * c * c * r * r  # conv1
        mac["affine"] += w * c + w * c  # conv1 and toRGB
        mac["torgb"] += c * c3 * r * r
        cin = c
    out = {name: 2.0 * v for name, v in mac.items()}
    out["synthesis"] = out["conv"] + out["fir"] + out["affine"] + out["torgb"]
    return out


class FullyConnected(nnx.Module):
    """Equalized-lr FC layer: ``act(x @ (W * lr_mul / sqrt(in)) + b * lr_mul)``."""

    def __init__(self, in_features: int, out_features: int, *, lr_mul: float = 1.0,
                 bias_init: float = 0.0, activation: str = "linear", rngs: nnx.Rngs):
        self.weight = nnx.Param(
            jax.random.normal(rngs.params(), (in_features, out_features)) / lr_mul)
        self.bias = nnx.Param(jnp.full((out_features,), bias_init, jnp.float32))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activation = activation

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = x @ (self.weight[...] * self.weight_gain)
        return ops.bias_act(y, self.bias[...] * self.bias_gain, self.activation)


class Mapping(nnx.Module):
    """z [N, z_dim] -> ws [N, num_ws, w_dim]."""

    def __init__(self, cfg: StyleGAN2Config, *, rngs: nnx.Rngs):
        dims = [cfg.z_dim] + [cfg.mapping_features] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", FullyConnected(dims[i], dims[i + 1],
                                                   lr_mul=cfg.mapping_lr_mul,
                                                   activation="lrelu", rngs=rngs))
        self.w_avg = Buffer(jnp.zeros((cfg.w_dim,), jnp.float32))
        self.num_layers = cfg.mapping_layers
        self.num_ws = cfg.num_ws

    def __call__(self, z, truncation_psi=1.0, truncation_cutoff=None):
        x = ops.normalize_2nd_moment(z.astype(jnp.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = jnp.broadcast_to(x[:, None, :], (x.shape[0], self.num_ws, x.shape[1]))
        return ops.truncate(ws, self.w_avg[...], truncation_psi, truncation_cutoff)


class SynthesisLayer(nnx.Module):
    """Modulated 3x3 conv (optionally 2x up), noise, bias, lrelu * sqrt(2), clamp."""

    def __init__(self, in_channels: int, out_channels: int, cfg: StyleGAN2Config,
                 resolution: int, *, up: int = 1, rngs: nnx.Rngs):
        self.affine = FullyConnected(cfg.w_dim, in_channels, bias_init=1.0, rngs=rngs)
        self.weight = nnx.Param(jax.random.normal(rngs.params(),
                                                  (3, 3, in_channels, out_channels)))
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32))
        self.use_noise = cfg.use_noise
        if cfg.use_noise:
            self.noise_strength = nnx.Param(jnp.zeros((), jnp.float32))
            self.noise_const = Buffer(jax.random.normal(rngs.params(), (resolution, resolution)))
        self.resolution = resolution
        self.up = up
        self.conv_clamp = cfg.conv_clamp
        self.resample_filter = cfg.resample_filter

    def __call__(self, x, w, noise_mode: str, key):
        styles = self.affine(w)
        f = ops.fir_taps(self.resample_filter)
        x = ops.modulated_conv2d(x, self.weight[...], styles, up=self.up, f=f)
        if self.use_noise and noise_mode == "const":
            noise = (self.noise_const[...] * self.noise_strength[...])[None, :, :, None]
            x = x + noise.astype(x.dtype)
        elif self.use_noise and noise_mode == "random":
            noise = ops.random_noise(key, x.shape[0], self.resolution)
            x = x + (noise * self.noise_strength[...]).astype(x.dtype)
        return ops.bias_act(x, self.bias[...], "lrelu", clamp=self.conv_clamp)


class ToRGB(nnx.Module):
    """Modulated 1x1 conv without demodulation, bias, clamp."""

    def __init__(self, in_channels: int, cfg: StyleGAN2Config, *, rngs: nnx.Rngs):
        self.affine = FullyConnected(cfg.w_dim, in_channels, bias_init=1.0, rngs=rngs)
        self.weight = nnx.Param(jax.random.normal(rngs.params(),
                                                  (1, 1, in_channels, cfg.img_channels)))
        self.bias = nnx.Param(jnp.zeros((cfg.img_channels,), jnp.float32))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.conv_clamp = cfg.conv_clamp

    def __call__(self, x, w):
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight[...], styles, demodulate=False)
        return ops.bias_act(x, self.bias[...], "linear", clamp=self.conv_clamp)


class SynthesisBlock(nnx.Module):
    """One resolution: (const | conv0 up) -> conv1 -> img = up(img) + torgb(x)."""

    def __init__(self, in_channels: int, out_channels: int, cfg: StyleGAN2Config,
                 resolution: int, *, rngs: nnx.Rngs):
        self.resolution = resolution
        if in_channels == 0:
            self.const = nnx.Param(jax.random.normal(rngs.params(), (4, 4, out_channels)))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, cfg, resolution, up=2,
                                        rngs=rngs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, cfg, resolution, rngs=rngs)
        self.torgb = ToRGB(out_channels, cfg, rngs=rngs)
        self.num_conv = 1 if in_channels == 0 else 2
        self.resample_filter = cfg.resample_filter

    def __call__(self, x, img, ws, noise_mode: str, key, dtype=jnp.float32):
        """ws: [N, num_conv + 1, w_dim] (the torgb w is shared with the next block).

        x runs in ``dtype`` (the first block casts its const); img stays float32.
        """
        keys = jax.random.split(key, 2) if key is not None else (None, None)
        if self.num_conv == 1:
            n = ws.shape[0]
            x = jnp.broadcast_to(self.const[...].astype(dtype)[None], (n,) + self.const.shape)
            x = self.conv1(x, ws[:, 0], noise_mode, keys[1])
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, keys[0])
            x = self.conv1(x, ws[:, 1], noise_mode, keys[1])
        y = self.torgb(x, ws[:, self.num_conv]).astype(jnp.float32)
        if img is None:
            return x, y
        return x, ops.upsample2d(img, ops.fir_taps(self.resample_filter)) + y


class Synthesis(nnx.Module):
    """ws [N, num_ws, w_dim] -> images [N, H, W, C]."""

    def __init__(self, cfg: StyleGAN2Config, *, rngs: nnx.Rngs):
        self.block_resolutions = cfg.block_resolutions
        self.num_ws = cfg.num_ws
        in_ch = 0
        for res in cfg.block_resolutions:
            out_ch = cfg.channels_at(res)
            setattr(self, f"b{res}", SynthesisBlock(in_ch, out_ch, cfg, res, rngs=rngs))
            in_ch = out_ch

    def __call__(self, ws, noise_mode: str = "const", key=None, resolution=None,
                 dtype="float32"):
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise_mode == "random" and key is None:
            raise ValueError("noise_mode='random' needs a PRNG key")
        stop = self.block_resolutions[-1] if resolution is None else resolution
        if stop not in self.block_resolutions:
            raise ValueError(f"resolution must be one of {self.block_resolutions}, got {stop}")
        dtype = jnp.dtype(dtype)
        if dtype not in COMPUTE_DTYPES:
            raise ValueError(f"dtype must be one of {[str(d) for d in COMPUTE_DTYPES]}, got "
                             f"{dtype}")
        ws = ws.astype(jnp.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            k = jax.random.fold_in(key, res) if noise_mode == "random" else None
            x, img = block(x, img, ws[:, w_idx:w_idx + block.num_conv + 1], noise_mode, k,
                           dtype)
            w_idx += block.num_conv
            if res == stop:
                break
        return img


class StyleGAN2Generator(nnx.Module):
    """Mapping + synthesis, keyed like NVIDIA's ``G_ema``."""

    def __init__(self, cfg: StyleGAN2Config, *, rngs: nnx.Rngs):
        self.mapping = Mapping(cfg, rngs=rngs)
        self.synthesis = Synthesis(cfg, rngs=rngs)


def init(cfg: StyleGAN2Config, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Randomly initialised generator (official init), split into (graphdef, state)."""
    return nnx.split(StyleGAN2Generator(cfg, rngs=nnx.Rngs(params=key)))


def abstract(cfg: StyleGAN2Config) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of ShapeDtypeStructs) without allocating weights."""
    model = nnx.eval_shape(lambda: StyleGAN2Generator(cfg, rngs=nnx.Rngs(params=0)))
    return nnx.split(model)


def num_params(state: nnx.State) -> int:
    """Number of parameters (as ``sum(p.numel() for p in G.parameters())``; no buffers)."""
    params = state.filter(nnx.Param)
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))


def mapping(graphdef: nnx.GraphDef, state: nnx.State, z: jnp.ndarray,
            truncation_psi: float | jnp.ndarray = 1.0,
            truncation_cutoff: int | jnp.ndarray | None = None) -> jnp.ndarray:
    """z [N, z_dim] -> ws [N, num_ws, w_dim] (pure; psi and cutoff may be traced)."""
    return nnx.merge(graphdef, state).mapping(z, truncation_psi, truncation_cutoff)


def synthesis(graphdef: nnx.GraphDef, state: nnx.State, ws: jnp.ndarray,
              noise_mode: str = "const", key: jax.Array | None = None,
              resolution: int | None = None, dtype: str = "float32") -> jnp.ndarray:
    """ws [N, num_ws, w_dim] -> images [N, R, R, C] float32, about [-1, 1].

    Args:
      noise_mode: 'const' (stored noise), 'random' (fresh N(0, 1) per layer from ``key``)
        or 'none'. Static.
      resolution: stop early and return the skip RGB image at this block resolution
        (static); None renders the full resolution.
      dtype: compute dtype of the feature maps and convolutions, 'float32' or 'bfloat16'
        (static; see the module docstring for what stays float32).
    """
    return nnx.merge(graphdef, state).synthesis(ws, noise_mode, key, resolution, dtype)


_mapping_jit = jax.jit(mapping, static_argnums=0)
_synthesis_jit = jax.jit(synthesis, static_argnums=(0, 3, 5, 6))


class Generator:
    """A loaded generator: config + (graphdef, state), with jitted convenience methods.

    Thin wrappers over the pure ``mapping``/``synthesis``: weights stay arguments of the
    compiled functions, ``truncation_psi``/``truncation_cutoff`` are traced (changing them
    does not recompile), ``noise_mode`` and ``resolution`` are static.

    Example:
      G = jaxfair.load_generator("checkpoints/ffhq1024")
      ws = G.mapping(z, truncation_psi=0.7)          # [N, num_ws, w_dim]
      img = G.synthesis(ws, noise_mode="const")      # [N, H, W, 3], about [-1, 1]
    """

    def __init__(self, config: StyleGAN2Config, graphdef: nnx.GraphDef, state: nnx.State,
                 meta: dict | None = None):
        self.config = config
        self.graphdef = graphdef
        self.state = state
        self.meta = meta or {}

    @classmethod
    def random(cls, config: StyleGAN2Config, key: jax.Array) -> Generator:
        """Randomly initialised (official init: N(0, 1) weights, zero noise strengths)."""
        return cls(config, *init(config, key))

    @property
    def num_params(self) -> int:
        return num_params(self.state)

    def mapping(self, z, truncation_psi=1.0, truncation_cutoff=None) -> jax.Array:
        """z [N, z_dim] -> ws [N, num_ws, w_dim]; truncation on rows < cutoff (all if None)."""
        cutoff = self.config.num_ws if truncation_cutoff is None else truncation_cutoff
        return _mapping_jit(self.graphdef, self.state, jnp.asarray(z, jnp.float32),
                            jnp.float32(truncation_psi), jnp.int32(cutoff))

    def synthesis(self, ws, noise_mode: str = "const", key: jax.Array | None = None,
                  resolution: int | None = None, dtype: str = "float32") -> jax.Array:
        """ws [N, num_ws, w_dim] -> images [N, R, R, C] float32 (R = resolution or full)."""
        return _synthesis_jit(self.graphdef, self.state, jnp.asarray(ws, jnp.float32),
                              noise_mode, key, resolution, str(jnp.dtype(dtype)))

    def __call__(self, z, truncation_psi=1.0, truncation_cutoff=None,
                 noise_mode: str = "const", key: jax.Array | None = None) -> jax.Array:
        """z [N, z_dim] -> images [N, H, W, C]: mapping then synthesis."""
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff),
                              noise_mode, key)
