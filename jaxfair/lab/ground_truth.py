"""Ground truth for latents of the demo world, W samples included (by projection onto G's W).

The demo generator is trained so that ``G(z)`` draws ``render(factors(z))``, and the factors
depend only on z's direction (``jaxfair.demo.fit_generator.labels_from_latent``). A z, and
so a z-space search result, has exact ground truth. A w made by the distribution method (or
a W-space search) was produced by no z: W = mapping(sphere) is a 63-dimensional surface in
the 64-dimensional W, and the generator was only ever trained on it. Its ground truth is
therefore *defined* here as that of the nearest point of the surface:

  z* = argmin_z  rms((mapping(z) - w) / scale)        (scale: per-dimension std of W)

found from the exact inverse of the mapping layers (square FC layers with leaky ReLU are
invertible; float64 on host) and then refined by Adam on the residual, because the inverse
alone is ill-conditioned: the layers' condition numbers reach ~600 each, so the float32
rounding of w moves the exact preimage by ~0.1 rms in directions the generator cannot see.
Callers report the residual (how far w is from the surface) next to every label, and
``projection_check`` measures how often the labeller recovers the true labels of points that
are on the surface (mapping(z) of known z). Off the surface the label is that of the nearest
face the generator was trained to draw, not a fact about G(w) itself; ``image_gap`` measures
how much G(w) and G(w*) differ in pixels, so the reader can judge the gap.

Example:
  gt = project(G, w, scale)                # z* [N, z_dim], residual [N]
  ok = in_group(labels_of_z(gt.z), target) # [N] bool
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxfair.demo import fit_generator
from jaxfair.judge import attributes
from jaxfair.models import stylegan2 as sg

DEMO_FORMAT = "jaxfair-demo"


def is_demo_generator(G: sg.Generator) -> bool:
    """True for a generator trained on the demo world (its latents have ground truth)."""
    return G.meta.get("source", {}).get("format") == DEMO_FORMAT


def check_invertible(cfg: sg.StyleGAN2Config) -> None:
    """Raises ValueError unless every mapping layer is square (z_dim = features = w_dim)."""
    if not cfg.z_dim == cfg.mapping_features == cfg.w_dim:
        raise ValueError(f"the mapping network is invertible only with square layers; this one "
                         f"has z_dim {cfg.z_dim}, features {cfg.mapping_features}, w_dim "
                         f"{cfg.w_dim}")


def invert_layers(cfg: sg.StyleGAN2Config, state: nnx.State, w: np.ndarray) -> np.ndarray:
    """The unique x [N, z_dim] with fc_{L-1}(...fc_0(x)) = w [N, w_dim] (float64, host).

    Each layer is ``y = lrelu(x @ (W g) + b g_b) * sqrt 2`` (slope 0.2): undo the gain and
    the leaky ReLU (both strictly monotone), then solve the square linear system.
    ``mapping(z)`` feeds the layers ``normalize_2nd_moment(z)``, so on W's surface x has rms 1.
    """
    check_invertible(cfg)
    x = np.asarray(w, np.float64)
    for i in reversed(range(cfg.mapping_layers)):
        fc = state["mapping"][f"fc{i}"]
        weight = np.asarray(fc["weight"][...], np.float64)
        gain = cfg.mapping_lr_mul / math.sqrt(weight.shape[0])
        bias = np.asarray(fc["bias"][...], np.float64) * cfg.mapping_lr_mul
        a = x / math.sqrt(2.0)
        a = np.where(a >= 0, a, a / 0.2)
        x = np.linalg.solve((weight * gain).T, (a - bias).T).T
    return x


@functools.partial(jax.jit, static_argnums=(0, 5))
def refine(graphdef: nnx.GraphDef, g_state: nnx.State, z0: jax.Array, w: jax.Array,
           scale: jax.Array, steps: int) -> tuple[jax.Array, jax.Array]:
    """Adam on ``sum_n mean_d ((mapping(z_n) - w_n) / scale)^2`` from z0 [N, z_dim].

    Rows are independent (the loss is a sum), so one batch refines every row at once.

    Returns:
      (z [N, z_dim] on the sphere of radius sqrt(z_dim), residual rms [N] in units of scale).
    """
    tx = optax.adam(optax.cosine_decay_schedule(0.02, steps, alpha=0.01))

    def residual(z):
        return jnp.mean(jnp.square((sg.mapping(graphdef, g_state, z)[:, 0] - w) / scale),
                        axis=-1)

    def body(carry, _):
        z, opt = carry
        grads = jax.grad(lambda z: jnp.sum(residual(z)))(z)
        updates, opt = tx.update(grads, opt, z)
        return (optax.apply_updates(z, updates), opt), None

    (z, _), _ = jax.lax.scan(body, (z0, tx.init(z0)), None, length=steps)
    z = z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True))  # rms 1
    return z, jnp.sqrt(residual(z))


@dataclasses.dataclass(frozen=True)
class Projection:
    """Nearest points of W's surface: z [N, z_dim], residual [N] (rms, units of scale)."""

    z: np.ndarray
    residual: np.ndarray


def padded(a: np.ndarray, batch: int) -> list[tuple[np.ndarray, int]]:
    """Rows of a [N, ...] in equal chunks, each with its number of real rows; the last is
    padded by repeating its final row. The chunk is ``batch``, or the next power of two
    >= N when that is smaller: few compiled shapes for any N, little padding for small N."""
    batch = min(batch, 1 << max(len(a) - 1, 0).bit_length())
    out = []
    for i in range(0, len(a), batch):
        n = min(batch, len(a) - i)
        out.append((np.pad(a[i:i + n], ((0, batch - n),) + ((0, 0),) * (a.ndim - 1),
                           mode="edge"), n))
    return out


def project(G: sg.Generator, w: np.ndarray, scale: np.ndarray, steps: int = 500,
            batch: int = 256) -> Projection:
    """Projects w [N, w_dim] onto mapping(sphere) (see module docstring).

    Args:
      scale: [w_dim] per-dimension standard deviation of W (the residual's unit).
      batch: rows per compiled call (``padded``: few traces for any N).
    """
    check_invertible(G.config)
    w = np.asarray(w, np.float32)
    if not len(w):
        return Projection(np.zeros((0, G.config.z_dim), np.float32), np.zeros(0, np.float32))
    x0 = invert_layers(G.config, G.state, w)
    x0 = (x0 / np.sqrt(np.mean(x0 * x0, axis=-1, keepdims=True))).astype(np.float32)
    zs, res = [], []
    for (xb, n), (wb, _) in zip(padded(x0, batch), padded(w, batch)):
        z, r = refine(G.graphdef, G.state, jnp.asarray(xb), jnp.asarray(wb),
                      jnp.asarray(scale, jnp.float32), steps)
        zs.append(np.asarray(z)[:n])
        res.append(np.asarray(r)[:n])
    return Projection(np.concatenate(zs), np.concatenate(res))


_labels_from_latent = jax.jit(fit_generator.labels_from_latent)


def labels_of_z(z: np.ndarray) -> dict[str, np.ndarray]:
    """Exact demo labels {attr: int [N]} of the faces G was trained to draw for z [N, z_dim]."""
    return {k: np.asarray(v) for k, v in
            _labels_from_latent(jnp.asarray(z, jnp.float32)).items()}


def in_group(labels: dict[str, np.ndarray], target: attributes.Target) -> np.ndarray:
    """bool [N]: every constrained attribute's true class is in the target."""
    ok = None
    for name, mask in target.masks.items():
        hit = np.asarray(mask)[labels[name]]
        ok = hit if ok is None else ok & hit
    return ok


def projection_check(G: sg.Generator, key: jax.Array, scale: np.ndarray, n: int = 1024,
                     steps: int = 500) -> dict[str, float]:
    """How often projecting w = mapping(z) recovers z's true labels (per attribute).

    These w lie on the surface, so the truth is known: the agreement is the labeller's own
    accuracy, the error bar of every ground-truth purity computed from projections.
    """
    z = jax.random.normal(key, (n, G.config.z_dim))
    w = np.asarray(G.mapping(z)[:, 0])
    got = labels_of_z(project(G, w, scale, steps).z)
    want = labels_of_z(np.asarray(z))
    return {k: round(float(np.mean(got[k] == want[k])), 4) for k in want}


@functools.partial(jax.jit, static_argnums=(0, 4))
def _gap(graphdef: nnx.GraphDef, g_state: nnx.State, w: jax.Array, z: jax.Array,
         noise_mode: str) -> jax.Array:
    ws_z = sg.mapping(graphdef, g_state, z)
    a = sg.synthesis(graphdef, g_state, jnp.broadcast_to(w[:, None], ws_z.shape), noise_mode)
    b = sg.synthesis(graphdef, g_state, ws_z, noise_mode)
    return jnp.mean(jnp.abs(a - b), axis=(1, 2, 3))


def image_gap(G: sg.Generator, w: np.ndarray, z: np.ndarray, noise_mode: str = "const",
              batch: int = 64) -> np.ndarray:
    """Mean |G(w) - G(mapping(z))| per image [N] ([-1, 1] pixel units) for w [N, w_dim] and
    z [N, z_dim]: how different the faces of w and of its projection z look."""
    out = [np.zeros(0, np.float32)]
    for (wb, n), (zb, _) in zip(padded(np.asarray(w, np.float32), batch),
                                padded(np.asarray(z, np.float32), batch)):
        out.append(np.asarray(_gap(G.graphdef, G.state, jnp.asarray(wb), jnp.asarray(zb),
                                   noise_mode))[:n])
    return np.concatenate(out)
