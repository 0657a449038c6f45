"""The MLP autoencoder of W used by the distribution method (Rahimi et al.).

Published shape (FFHQ, w_dim 512): encoder 512 -> 256 -> 128 -> 64 -> 32 with LeakyReLU on
the hidden layers and ReLU on the 32-d code; decoder mirrored 32 -> 64 -> 128 -> 256 -> 512
with LeakyReLU (also on the output layer as published; ``output_activation='linear'`` is
the alternative). W is standardised per dimension with stored statistics (``w_mean``,
``w_std``, buffers, not parameters) before encoding and de-standardised after decoding.

Optional ``num_groups > 0`` adds a linear classification head on the code (``head``),
trained with cross-entropy on the group labels: the reconstruction loss alone spreads
groups over the code however it likes; the head asks for groups to be linearly separable
in it, so the per-group mixtures overlap less and their samples decode into their group.

Example:
  cfg = AutoencoderConfig.scaled(64, num_groups=6)     # 64 -> 48 -> 32 -> 16 -> 8
  graphdef, state = init(cfg, key)
  code = encode(graphdef, state, w)                    # [N, 8]
  w_hat = decode(graphdef, state, code)                # [N, 64]
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = ("leaky_relu", "linear")


class Buffer(nnx.Variable):
    """Stored, non-trainable array (W standardisation statistics)."""


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture (hashable).

    Attributes:
      w_dim: size of W.
      hidden: encoder hidden widths (the decoder uses them reversed).
      code_dim: size of the code.
      num_groups: outputs of the linear group head on the code; 0 = no head.
      negative_slope: of the LeakyReLUs (0.01: torch's default, as published).
      output_activation: 'leaky_relu' (published) or 'linear' on the decoder's last layer.
    """

    w_dim: int = 512
    hidden: tuple[int, ...] = (256, 128, 64)
    code_dim: int = 32
    num_groups: int = 0
    negative_slope: float = 0.01
    output_activation: str = "leaky_relu"

    def __post_init__(self):
        if self.output_activation not in ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {ACTIVATIONS}, got "
                             f"{self.output_activation!r}")
        if min(self.w_dim, self.code_dim, *self.hidden) < 1 or self.num_groups < 0:
            raise ValueError(f"autoencoder sizes must be positive: {self}")

    @classmethod
    def published(cls, num_groups: int = 0) -> AutoencoderConfig:
        """512 -> 256 -> 128 -> 64 -> 32, as in the paper."""
        return cls(num_groups=num_groups)

    @classmethod
    def scaled(cls, w_dim: int, num_groups: int = 0, **kw) -> AutoencoderConfig:
        """The published shape for another w_dim.

        w_dim >= 512: widths w/2, w/4, w/8 and code w/16 (the paper's ratios). Smaller W
        would get a code too small to separate groups, so there the widths are 3w/4, w/2,
        w/4 and the code w/8: w_dim 64 gives 64 -> 48 -> 32 -> 16 -> 8.
        """
        if w_dim >= 512:
            hidden, code = (w_dim // 2, w_dim // 4, w_dim // 8), w_dim // 16
        else:
            hidden, code = (3 * w_dim // 4, w_dim // 2, w_dim // 4), w_dim // 8
        return cls(w_dim=w_dim, hidden=tuple(max(h, 2) for h in hidden),
                   code_dim=max(code, 2), num_groups=num_groups, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AutoencoderConfig:
        return cls(**{**d, "hidden": tuple(d["hidden"])})


class Autoencoder(nnx.Module):
    """W [N, w_dim] <-> code [N, code_dim]; layers ``enc{i}``, ``dec{i}``, optional ``head``."""

    def __init__(self, cfg: AutoencoderConfig, *, rngs: nnx.Rngs):
        dims = (cfg.w_dim, *cfg.hidden, cfg.code_dim)
        self.num_layers = len(dims) - 1
        for i in range(self.num_layers):
            setattr(self, f"enc{i}", nnx.Linear(dims[i], dims[i + 1], rngs=rngs))
            setattr(self, f"dec{i}", nnx.Linear(dims[-1 - i], dims[-2 - i], rngs=rngs))
        self.head = nnx.Linear(cfg.code_dim, cfg.num_groups, rngs=rngs) if cfg.num_groups \
            else None
        self.w_mean = Buffer(jnp.zeros((cfg.w_dim,), jnp.float32))
        self.w_std = Buffer(jnp.ones((cfg.w_dim,), jnp.float32))
        self.slope = cfg.negative_slope
        self.linear_output = cfg.output_activation == "linear"

    def encode(self, w: jax.Array) -> jax.Array:
        x = (w - self.w_mean[...]) / self.w_std[...]
        for i in range(self.num_layers - 1):
            x = jax.nn.leaky_relu(getattr(self, f"enc{i}")(x), self.slope)
        return jax.nn.relu(getattr(self, f"enc{self.num_layers - 1}")(x))

    def decode_standardised(self, code: jax.Array) -> jax.Array:
        x = code
        for i in range(self.num_layers):
            x = getattr(self, f"dec{i}")(x)
            if i < self.num_layers - 1 or not self.linear_output:
                x = jax.nn.leaky_relu(x, self.slope)
        return x

    def decode(self, code: jax.Array) -> jax.Array:
        return self.decode_standardised(code) * self.w_std[...] + self.w_mean[...]


def init(cfg: AutoencoderConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    return nnx.split(Autoencoder(cfg, rngs=nnx.Rngs(key)))


def abstract(cfg: AutoencoderConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """Shapes only (for loading a checkpoint)."""
    return nnx.split(nnx.eval_shape(lambda: Autoencoder(cfg, rngs=nnx.Rngs(0))))


def encode(graphdef: nnx.GraphDef, state: nnx.State, w: jax.Array) -> jax.Array:
    """w [N, w_dim] -> code [N, code_dim] (>= 0: ReLU)."""
    return nnx.merge(graphdef, state).encode(w)


def decode(graphdef: nnx.GraphDef, state: nnx.State, code: jax.Array) -> jax.Array:
    """code [N, code_dim] -> w [N, w_dim]."""
    return nnx.merge(graphdef, state).decode(code)


def losses(graphdef: nnx.GraphDef, state: nnx.State, w: jax.Array, labels: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
    """(reconstruction MSE in standardised W, group cross-entropy) for a batch.

    Args:
      w: [B, w_dim]. labels: [B] int group index, -1 = no group (left out of the
        cross-entropy; the head term is 0 when the model has no head).
    """
    model = nnx.merge(graphdef, state)
    target = (w - model.w_mean[...]) / model.w_std[...]
    code = model.encode(w)
    recon = jnp.mean((model.decode_standardised(code) - target) ** 2)
    if model.head is None:
        return recon, jnp.zeros(())
    logits = model.head(code)
    known = labels >= 0
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, jnp.maximum(labels, 0)[:, None], axis=-1)[:, 0]
    ce = jnp.sum(jnp.where(known, nll, 0.0)) / jnp.maximum(jnp.sum(known), 1)
    return recon, ce
