"""A fixed-capacity archive of accepted candidates, updated with masked writes under jit.

One archive per search (vmap it for S searches). Every accepted candidate of every
generation is offered; it is stored unless it lies within ``radius`` (spaces.distance) of a
stored latent or of an earlier candidate of the same batch. When the archive is full,
further unique candidates are counted in ``overflow`` (never silently lost).

Example:
  arc = empty(capacity=64, dim=space.dim, num_attrs=3)
  arc = insert(arc, space, u, ok, masses, loss, generation, radius=0.05)
  arc.count, arc.overflow, arc.duplicates
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from jaxfair.search import spaces


@flax.struct.dataclass
class Archive:
    """Stored candidates; rows ``>= min(count, capacity)`` are unused.

    Attributes:
      latents: [C, D] search coordinates.
      masses: [C, A] target probability per attribute when accepted.
      loss: [C] objective value when accepted.
      generation: [C] int32 generation it was found in (-1: unused row).
      count: int32 number stored (<= C).
      overflow: int32 unique accepted candidates that found the archive full.
      duplicates: int32 accepted candidates rejected as near-duplicates.
    """

    latents: jax.Array
    masses: jax.Array
    loss: jax.Array
    generation: jax.Array
    count: jax.Array
    overflow: jax.Array
    duplicates: jax.Array

    @property
    def capacity(self) -> int:
        return self.latents.shape[-2]


def empty(capacity: int, dim: int, num_attrs: int) -> Archive:
    """An empty archive of ``capacity`` rows."""
    return Archive(latents=jnp.zeros((capacity, dim), jnp.float32),
                   masses=jnp.zeros((capacity, num_attrs), jnp.float32),
                   loss=jnp.full((capacity,), jnp.inf, jnp.float32),
                   generation=jnp.full((capacity,), -1, jnp.int32),
                   count=jnp.int32(0), overflow=jnp.int32(0), duplicates=jnp.int32(0))


def nearest_distance(archive: Archive, space: spaces.Space, u: jax.Array) -> jax.Array:
    """Distance from each candidate u [N, D] to its nearest stored latent [N] (inf if none)."""
    d = spaces.distance(space, u[:, None, :], archive.latents[None, :, :])  # [N, C]
    used = jnp.arange(archive.capacity) < archive.count
    return jnp.min(jnp.where(used[None, :], d, jnp.inf), axis=-1)


def insert(archive: Archive, space: spaces.Space, u: jax.Array, ok: jax.Array,
           masses: jax.Array, loss: jax.Array, generation: jax.Array,
           radius: float) -> Archive:
    """Offers candidates u [N, D] (ok [N] bool: accepted) to the archive.

    A candidate is new when it is farther than ``radius`` from every stored latent and
    from every earlier *eligible* candidate of this batch (eligible: accepted and new with
    respect to the archive). This is conservative inside a batch (a chain a~b~c with a, c
    apart keeps only a) but guarantees that no two stored latents are within ``radius``.

    Args:
      masses: [N, A]; loss: [N]; generation: scalar int.
    """
    n = u.shape[0]
    eligible = ok & (nearest_distance(archive, space, u) > radius)
    within = spaces.distance(space, u[:, None, :], u[None, :, :]) <= radius  # [N, N]
    earlier = jnp.tril(jnp.ones((n, n), bool), k=-1)
    clash = jnp.any(within & earlier & eligible[None, :], axis=-1)
    new = eligible & ~clash
    slot = archive.count + jnp.cumsum(new) - 1
    fits = new & (slot < archive.capacity)
    idx = jnp.where(fits, slot, archive.capacity)  # out of range: dropped by the scatter
    stored = jnp.sum(fits, dtype=jnp.int32)

    def put(dst, src):
        return dst.at[idx].set(src.astype(dst.dtype), mode="drop")

    return archive.replace(
        latents=put(archive.latents, u), masses=put(archive.masses, masses),
        loss=put(archive.loss, loss),
        generation=put(archive.generation, jnp.broadcast_to(generation, (n,))),
        count=archive.count + stored,
        overflow=archive.overflow + jnp.sum(new & ~fits, dtype=jnp.int32),
        duplicates=archive.duplicates + jnp.sum(ok & ~new, dtype=jnp.int32))
