"""The NNX modules of the StyleGAN2 generator, named after NVIDIA's checkpoint keys.

``StyleGAN2Generator`` holds ``mapping`` (``fc0``..., ``w_avg``) and ``synthesis``
(``b4``..., each with ``conv0``/``conv1``/``torgb`` and their ``affine``), so importers
only transpose. Arrays use JAX layouts: FC weights [in, out], conv weights
[k, k, in, out], const [4, 4, C], activations NHWC. The arithmetic is in the pure kernels of
``stylegan2_ops``; ``stylegan2`` wraps these modules in pure, jitted entry points.

Example:
  model = StyleGAN2Generator(StyleGAN2Config.ffhq_256(), rngs=nnx.Rngs(params=key))
  ws = model.mapping(z)                        # [N, num_ws, w_dim]
  img = model.synthesis(ws)                    # [N, 256, 256, 3]
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxfair import keys
from jaxfair.models import stylegan2_ops as ops
from jaxfair.models.stylegan2_config import COMPUTE_DTYPES, NOISE_MODES, StyleGAN2Config


class Buffer(nnx.Variable):
    """A stored, non-trainable array (``w_avg``, ``noise_const``): not a parameter."""


class Derived(nnx.Variable):
    """Arrays computed from the weights for the forward pass (``stylegan2.prepare``): never
    stored in a checkpoint, recomputed whenever the weights change."""


class FullyConnected(nnx.Module):
    """Equalized-lr FC layer: ``act(x @ (W * lr_mul / sqrt(in)) + b * lr_mul)``."""

    def __init__(self, in_features: int, out_features: int, *, lr_mul: float = 1.0,
                 bias_init: float = 0.0, activation: str = "linear", rngs: nnx.Rngs):
        self.weight = nnx.Param(
            keys.normal(rngs.params(), (in_features, out_features)) / lr_mul)
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
        self.weight = nnx.Param(keys.normal(rngs.params(),
                                                  (3, 3, in_channels, out_channels)))
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32))
        self.use_noise = cfg.use_noise
        if cfg.use_noise:
            self.noise_strength = nnx.Param(jnp.zeros((), jnp.float32))
            self.noise_const = Buffer(keys.normal(rngs.params(), (resolution, resolution)))
        self.resolution = resolution
        self.up = up
        self.conv_clamp = cfg.conv_clamp
        self.resample_filter = cfg.resample_filter

    def derive(self) -> dict:
        """The conv's weight-only arrays (``stylegan2_ops.derive_conv``) for this layer's
        input [N, resolution / up, resolution / up, I]."""
        w = self.weight[...]
        size = self.resolution // self.up
        return ops.derive_conv(w, (1, size, size, w.shape[2]), self.up)

    def __call__(self, x, w, noise_mode: str, key):
        styles = self.affine(w)
        f = ops.fir_taps(self.resample_filter)
        derived = self.derived.get_value() if hasattr(self, "derived") else None
        x = ops.modulated_conv2d(x, self.weight[...], styles, up=self.up, f=f,
                                 derived=derived)
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
        self.weight = nnx.Param(keys.normal(rngs.params(),
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
            self.const = nnx.Param(keys.normal(rngs.params(), (4, 4, out_channels)))
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
        layer_keys = jax.random.split(key, 2) if key is not None else (None, None)
        if self.num_conv == 1:
            n = ws.shape[0]
            x = jnp.broadcast_to(self.const[...].astype(dtype)[None], (n,) + self.const.shape)
            x = self.conv1(x, ws[:, 0], noise_mode, layer_keys[1])
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, layer_keys[0])
            x = self.conv1(x, ws[:, 1], noise_mode, layer_keys[1])
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

    def conv_layers(self) -> list[SynthesisLayer]:
        """The modulated 3x3 conv layers, from the first block to the last."""
        out = []
        for res in self.synthesis.block_resolutions:
            block = getattr(self.synthesis, f"b{res}")
            out += [block.conv0, block.conv1] if block.num_conv == 2 else [block.conv1]
        return out
