"""A fixed-capacity archive of accepted candidates, updated with masked writes under jit.

One archive per search (vmap it for S searches). Every accepted candidate of every
generation is offered; it is stored unless it is a *near-duplicate* of a stored row or of
an earlier candidate of the same batch. Two candidates are near-duplicates when

- their latents lie within ``radius`` (``spaces.distance``: the identity distance of
  ``jaxfair.identity`` on canonical latents, prior units), OR
- ``feature_radius > 0`` and their classifier features lie within ``feature_radius``
  (``feature_distance``: the chord distance of unit-normalised penultimate features).

When the archive is full, further unique candidates are counted in ``overflow`` (never
silently lost); rejected near-duplicates are counted in ``duplicates``.

Why the chord (cosine) distance for features: the penultimate features of a ReLU network
are non-negative and their overall scale follows image contrast and brightness, which says
little about whether two faces are the same one; the direction is what the linear heads
read. Unit-normalising removes the scale, so one radius means the same for a 512-d ResNet
pool and a 4096-d VGG fc7 and needs no statistics of the feature distribution. The chord
``|a/|a| - b/|b||`` = ``sqrt(2 - 2 cos)`` is a true metric (0 same direction, sqrt(2)
orthogonal), unlike ``1 - cos``.

Example:
  arc = empty(capacity=64, dim=space.dim, num_attrs=3, feature_dim=512)
  arc = insert(arc, space, u, ok, masses, loss, generation, radius=0.05,
               features=f, feature_radius=0.02)
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
      features: [C, F] classifier features when stored (F = 0: the feature test is off).
      masses: [C, A] target probability per attribute when accepted.
      loss: [C] objective value when accepted.
      generation: [C] int32 generation it was found in (-1: unused row).
      count: int32 number stored (<= C).
      overflow: int32 unique accepted candidates that found the archive full.
      duplicates: int32 accepted candidates rejected as near-duplicates.
    """

    latents: jax.Array
    features: jax.Array
    masses: jax.Array
    loss: jax.Array
    generation: jax.Array
    count: jax.Array
    overflow: jax.Array
    duplicates: jax.Array

    @property
    def capacity(self) -> int:
        return self.latents.shape[-2]


def empty(capacity: int, dim: int, num_attrs: int, feature_dim: int = 0) -> Archive:
    """An empty archive of ``capacity`` rows (``feature_dim`` 0: no feature test)."""
    return Archive(latents=jnp.zeros((capacity, dim), jnp.float32),
                   features=jnp.zeros((capacity, feature_dim), jnp.float32),
                   masses=jnp.zeros((capacity, num_attrs), jnp.float32),
                   loss=jnp.full((capacity,), jnp.inf, jnp.float32),
                   generation=jnp.full((capacity,), -1, jnp.int32),
                   count=jnp.int32(0), overflow=jnp.int32(0), duplicates=jnp.int32(0))


def feature_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    """Chord distance of unit-normalised features, all pairs: a [N, F], b [M, F] -> [N, M].

    ``sqrt(max(2 - 2 cos, 0))`` from one matmul (cheap for F = 4096). In float32 the
    cosine is exact to ~1e-7, so distances below ~5e-4 are not resolved: use radii well
    above that. A zero vector (every ReLU dead) is normalised to zero: distance 1 from any
    unit vector, 0 from another zero vector.
    """
    def unit(x):
        x = x.astype(jnp.float32)
        n = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
        return x / jnp.maximum(n, 1e-12)
    ua, ub = unit(a), unit(b)
    sq = (jnp.sum(jnp.square(ua), -1)[:, None] + jnp.sum(jnp.square(ub), -1)[None, :]
          - 2.0 * ua @ ub.T)
    return jnp.sqrt(jnp.maximum(sq, 0.0))


def nearest_distance(archive: Archive, space: spaces.Space, u: jax.Array) -> jax.Array:
    """Distance from each candidate u [N, D] to its nearest stored latent [N] (inf if none)."""
    d = spaces.distance(space, u[:, None, :], archive.latents[None, :, :])  # [N, C]
    used = jnp.arange(archive.capacity) < archive.count
    return jnp.min(jnp.where(used[None, :], d, jnp.inf), axis=-1)


def _near(space, u, v, fu, fv, radius, feature_radius):
    """[N, M] bool: u [N, D] and v [M, D] are near-duplicates (either radius)."""
    near = spaces.distance(space, u[:, None, :], v[None, :, :]) <= radius
    if feature_radius > 0:
        near = near | (feature_distance(fu, fv) <= feature_radius)
    return near


def insert(archive: Archive, space: spaces.Space, u: jax.Array, ok: jax.Array,
           masses: jax.Array, loss: jax.Array, generation: jax.Array,
           radius: float, features: jax.Array | None = None,
           feature_radius: float = 0.0) -> Archive:
    """Offers candidates u [N, D] (ok [N] bool: accepted) to the archive.

    A candidate is new when it is not a near-duplicate (see the module docstring) of any
    stored row nor of any earlier *eligible* candidate of this batch (eligible: accepted
    and new with respect to the archive). This is conservative inside a batch (a chain
    a~b~c with a, c apart keeps only a) but guarantees that no two stored rows are within
    ``radius`` in latent space, nor within ``feature_radius`` in feature space.

    Args:
      masses: [N, A]; loss: [N]; generation: scalar int.
      radius: latent radius (static); 0 rejects exact copies only.
      features: [N, F] classifier features, needed when ``feature_radius > 0`` (F must be
        the archive's feature_dim).
      feature_radius: feature radius (static); 0 turns the feature test off.
    """
    n = u.shape[0]
    if feature_radius > 0:
        if features is None or features.shape[-1] != archive.features.shape[-1]:
            raise ValueError(f"feature_radius > 0 needs features [N, "
                             f"{archive.features.shape[-1]}] (the archive's feature_dim)")
    else:
        features = jnp.zeros((n, archive.features.shape[-1]), jnp.float32)
    used = jnp.arange(archive.capacity) < archive.count
    stored_near = _near(space, u, archive.latents, features, archive.features, radius,
                        feature_radius)
    eligible = ok & ~jnp.any(stored_near & used[None, :], axis=-1)
    within = _near(space, u, u, features, features, radius, feature_radius)  # [N, N]
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
        latents=put(archive.latents, u), features=put(archive.features, features),
        masses=put(archive.masses, masses), loss=put(archive.loss, loss),
        generation=put(archive.generation, jnp.broadcast_to(generation, (n,))),
        count=archive.count + stored,
        overflow=archive.overflow + jnp.sum(new & ~fits, dtype=jnp.int32),
        duplicates=archive.duplicates + jnp.sum(ok & ~new, dtype=jnp.int32))
