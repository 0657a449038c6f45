"""StyleGAN2 generator (NVIDIA config-f, 'skip' synthesis) in Flax NNX, inference only.

The names to import: the architecture (``StyleGAN2Config``, its presets and
``architecture_flops``, defined in ``stylegan2_config``), the pure entry points and the
``Generator`` wrapper. The NNX modules, named after the official checkpoint keys, are in
``stylegan2_layers``; the numeric kernels in ``stylegan2_ops``.

The pure entry points are ``mapping`` and ``synthesis``: they take the module's graphdef and
state (weights) as arguments, so one compiled function serves any weights of the same
architecture and nothing is baked into the program as a constant.

``synthesis(..., dtype='bfloat16')`` runs the feature maps and every convolution in bf16,
the float32 weights cast where they are used (once per call). Kept in float32: the mapping
network and the affine layers (styles), the demodulation coefficients (a rsqrt of a sum of
k*k*I squared weights: bf16 would leave ~3 significant digits before the rsqrt), and the
RGB skip image (the output is the sum of every block's upsampled contribution; 3 channels,
negligible cost). With the default float32 nothing changes (every cast is a no-op).

Example:
  graphdef, state = init(StyleGAN2Config.ffhq_256(), key)
  ws = mapping(graphdef, state, z, truncation_psi=0.7)    # [N, num_ws, w_dim]
  img = synthesis(graphdef, state, ws)                    # [N, 256, 256, 3], about [-1, 1]
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

# The architecture is part of this module's API (docs/generator.md, docs/performance.md).
from jaxfair.models.stylegan2_config import (  # noqa: F401
    NOISE_MODES,
    StyleGAN2Config,
    architecture_flops,
)
from jaxfair.models.stylegan2_layers import Derived, StyleGAN2Generator


def init(cfg: StyleGAN2Config, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Randomly initialised generator (official init), split into (graphdef, state)."""
    return nnx.split(StyleGAN2Generator(cfg, rngs=nnx.Rngs(params=key)))


def abstract(cfg: StyleGAN2Config) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of ShapeDtypeStructs) without allocating weights."""
    model = nnx.eval_shape(lambda: StyleGAN2Generator(cfg, rngs=nnx.Rngs(params=0)))
    return nnx.split(model)


def _derive(graphdef: nnx.GraphDef, state: nnx.State) -> list[dict]:
    return [layer.derive() for layer in nnx.merge(graphdef, state).conv_layers()]


_derive_jit = jax.jit(_derive, static_argnums=0)


def prepare(graphdef: nnx.GraphDef, state: nnx.State) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state) whose conv layers carry their derived weights (``Derived``).

    Synthesis computes some arrays from the weights alone: the demodulation's summed squared
    taps, and per the conv's form the Winograd kernel transforms, the up conv's Winograd
    kernels or its phase taps (``stylegan2_ops.derive_conv``). Inside a jitted step they
    would be recomputed on every call; computed here once, they travel with the weights as
    arguments (``Generator`` does this for every generator it holds). Derived weights
    already in ``state`` are recomputed from its current weights; ``synthesis`` gives the
    same images with or without them. Costs memory: on CPU about 1.3x the generator's
    weights (the Winograd forms: 16/9 and 25/9 of their convs' weights); where those forms
    are not used, a copy of the up convs' weights (phase taps) and a ninth of the others.
    """
    model = nnx.merge(graphdef, state)
    for layer in model.conv_layers():
        if hasattr(layer, "derived"):
            del layer.derived
    raw_graphdef, raw_state = nnx.split(model)
    for layer, derived in zip(model.conv_layers(), _derive_jit(raw_graphdef, raw_state)):
        layer.derived = Derived(derived)
    return nnx.split(model)


def stored_weights(state: nnx.State) -> nnx.State:
    """The state without its derived weights: what a checkpoint holds."""
    return state.filter(nnx.Not(Derived))


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
    does not recompile), ``noise_mode`` and ``resolution`` are static. ``state`` holds the
    derived weights of ``prepare`` (computed here from the weights given): after changing
    weights, build a new ``Generator`` (or call ``prepare``) so they follow;
    ``stored_weights(G.state)`` is what to save.

    Example:
      G = jaxfair.load_generator("checkpoints/ffhq1024")
      ws = G.mapping(z, truncation_psi=0.7)          # [N, num_ws, w_dim]
      img = G.synthesis(ws, noise_mode="const")      # [N, H, W, 3], about [-1, 1]
    """

    def __init__(self, config: StyleGAN2Config, graphdef: nnx.GraphDef, state: nnx.State,
                 meta: dict | None = None):
        self.config = config
        self.graphdef, self.state = prepare(graphdef, state)
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
