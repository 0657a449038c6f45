"""Search spaces: what a candidate vector means, how it becomes ws, and its prior.

Every strategy searches in *normalised* coordinates ``u`` (each coordinate about N(0, 1)
under the prior), so one set of step sizes fits every space and generator:

- ``z``: ``u`` is z itself ([z_dim]); ws = mapping(z, psi), truncation applies here.
- ``w``: ``u = (w - w_avg) / w_std`` ([w_dim]); the one w is broadcast to every layer.
- ``wplus``: one ``u`` row per layer ([num_ws * w_dim], row-major); no mapping.

``Prior`` holds the generator-dependent numbers (``w_avg``, ``w_std``) as arrays: they are
arguments of the compiled search, never constants baked into it.

Example:
  space = Space.create("w", G.config)
  prior = estimate_prior(G, key)
  u = sample(space, G.graphdef, G.state, prior, key, n=16, psi=0.7)   # [16, w_dim]
  ws = to_ws(space, G.graphdef, G.state, prior, u, psi=0.7)          # [16, num_ws, w_dim]
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from jaxfair import identity
from jaxfair.models import stylegan2 as sg
from jaxfair.models import stylegan2_ops as ops

SPACES = ("z", "w", "wplus")


@dataclasses.dataclass(frozen=True)
class Space:
    """A search space of one generator architecture (hashable: a static jit argument).

    Attributes:
      name: 'z', 'w' or 'wplus'.
      z_dim, w_dim, num_ws: the generator's latent sizes.
    """

    name: str
    z_dim: int
    w_dim: int
    num_ws: int

    def __post_init__(self):
        if self.name not in SPACES:
            raise ValueError(f"unknown space {self.name!r}; choose from {', '.join(SPACES)}")

    @classmethod
    def create(cls, name: str, config: sg.StyleGAN2Config) -> Space:
        return cls(name, config.z_dim, config.w_dim, config.num_ws)

    @property
    def dim(self) -> int:
        """Length of a candidate vector."""
        return {"z": self.z_dim, "w": self.w_dim, "wplus": self.num_ws * self.w_dim}[self.name]


@flax.struct.dataclass
class Prior:
    """Generator statistics the spaces need: ``w_avg [w_dim]``, ``w_std`` scalar (float32).

    ``w_std`` is the root-mean-square per-coordinate deviation of w from w_avg under the
    prior (psi = 1), the unit of the w and wplus spaces.
    """

    w_avg: jax.Array
    w_std: jax.Array


def estimate_prior(G: sg.Generator, key: jax.Array, n: int = 4096) -> Prior:
    """w_avg as stored in the generator, w_std measured on ``n`` prior samples."""
    w_avg = jnp.asarray(G.state["mapping"]["w_avg"][...], jnp.float32)
    w = G.mapping(jax.random.normal(key, (n, G.config.z_dim)))[:, 0]
    return Prior(w_avg, jnp.sqrt(jnp.mean(jnp.square(w - w_avg))))


def to_ws(space: Space, graphdef: nnx.GraphDef, g_state: nnx.State, prior: Prior,
          u: jax.Array, psi: float | jax.Array) -> jax.Array:
    """Candidates u [N, dim] -> ws [N, num_ws, w_dim] (pure)."""
    n = u.shape[0]
    if space.name == "z":
        return sg.mapping(graphdef, g_state, u, psi)
    w = prior.w_avg + prior.w_std * u.reshape(n, -1, space.w_dim)
    return jnp.broadcast_to(w, (n, space.num_ws, space.w_dim))


def sample(space: Space, graphdef: nnx.GraphDef, g_state: nnx.State, prior: Prior,
           key: jax.Array, n: int, psi: float | jax.Array) -> jax.Array:
    """n prior samples in search coordinates [n, dim]: z ~ N(0, I), w = mapping(z, psi).

    In wplus every layer starts from the same w (what the generator's prior produces).
    """
    z = jax.random.normal(key, (n, space.z_dim))
    if space.name == "z":
        return z
    w = sg.mapping(graphdef, g_state, z, psi)[:, 0]
    u = (w - prior.w_avg) / prior.w_std
    return jnp.tile(u, (1, space.dim // space.w_dim))


def prior_loss(space: Space, u: jax.Array) -> jax.Array:
    """How far u [..., dim] strays from the prior's typical set [...] (0 inside it).

    z: ``((|z|^2 - D) / sqrt(2D))^2 / 2``, the squared standardised chi-square deviation of
    the norm (the mapping network only sees z's direction; this keeps the norm sane).
    w, wplus: the same deviation per w (each layer's row in wplus, averaged), counted only
    outwards (``|u|^2 > w_dim``): truncation legitimately pulls w towards w_avg, only the far
    tail leaves the training distribution.
    """
    if space.name == "z":
        d = space.dim
        return 0.5 * jnp.square((jnp.sum(jnp.square(u), axis=-1) - d) / jnp.sqrt(2.0 * d))
    rows = u.reshape(*u.shape[:-1], -1, space.w_dim)
    t = (jnp.sum(jnp.square(rows), axis=-1) - space.w_dim) / jnp.sqrt(2.0 * space.w_dim)
    return jnp.mean(0.5 * jnp.square(jnp.maximum(t, 0.0)), axis=-1)


def canonical(space: Space, u: jax.Array) -> jax.Array:
    """What the generator actually sees, in prior units, for distances: [..., dim].

    z is projected onto the sphere of radius sqrt(z_dim) (the mapping network's first
    operation, so z and 2z are the same face); w coordinates are already in w_std units.
    """
    if space.name == "z":
        return ops.normalize_2nd_moment(u)
    return u


def distance(space: Space, a: jax.Array, b: jax.Array) -> jax.Array:
    """The identity distance (``jaxfair.identity``) of canonical latents a, b [..., D]."""
    return identity.distance(canonical(space, a), canonical(space, b))


def to_latent(space: Space, prior: Prior, u: jax.Array) -> jax.Array:
    """Search coordinates [N, dim] -> the space's own latents: z [N, z_dim], w [N, w_dim]
    or wplus [N, num_ws, w_dim] (what ``G.mapping`` returns / ``G.synthesis`` reads)."""
    if space.name == "z":
        return u
    w = prior.w_avg + prior.w_std * u.reshape(u.shape[0], -1, space.w_dim)
    return w[:, 0] if space.name == "w" else w
