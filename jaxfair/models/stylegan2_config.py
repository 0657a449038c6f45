"""The architecture of a StyleGAN2 generator: a frozen config, its presets and FLOP count.

``StyleGAN2Config`` is hashable (a static argument of jitted functions) and is what a
checkpoint's metadata records (``to_dict``/``from_dict``); importers build it from the
source file. ``architecture_flops`` counts the architecture's arithmetic, the convention the
peer benchmark reports against (docs/performance.md).

Example:
  cfg = StyleGAN2Config.ffhq_1024()            # config-f, 30,370,060 parameters
  cfg.num_ws, cfg.block_resolutions            # 18, (4, 8, ..., 1024)
  architecture_flops(cfg)["synthesis"]         # FLOP per image
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

NOISE_MODES = ("const", "random", "none")
COMPUTE_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


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
