"""Diagonal Gaussian mixtures fitted by EM, in pure JAX (no scikit-learn).

Groups share one data matrix and differ by a membership mask, so fitting every group is one
``vmap`` over (key, mask) of the single-group fit, and one ``lax.scan`` over EM iterations:

  gmms, ll = fit_groups(keys, x, masks, num_components=4, steps=100, reg=1e-3)
  codes = sample(key, jax.tree.map(lambda a: a[g], gmms), 100)   # [100, D] from group g

Shapes: data ``x [N, D]``, mask ``[N]`` (1 = the row belongs to the group, 0 = ignored),
mixture ``weights [K]``, ``means [K, D]``, ``variances [K, D]`` (a leading ``[G]`` when
stacked over groups).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

_TINY = 1e-10


@flax.struct.dataclass
class DiagGMM:
    """A mixture of K diagonal Gaussians in D dimensions (pytree of arrays)."""

    weights: jax.Array  # [K], sums to 1
    means: jax.Array  # [K, D]
    variances: jax.Array  # [K, D], > 0


def component_log_probs(gmm: DiagGMM, x: jax.Array) -> jax.Array:
    """log(weight_k) + log N(x_n | mean_k, diag(var_k)): [N, K] for x [N, D]."""
    d = x.shape[-1]
    diff = x[:, None, :] - gmm.means[None]  # [N, K, D]
    maha = jnp.sum(diff * diff / gmm.variances[None], axis=-1)
    log_det = jnp.sum(jnp.log(gmm.variances), axis=-1)  # [K]
    log_norm = -0.5 * (d * jnp.log(2 * jnp.pi) + log_det)
    return jnp.log(gmm.weights + _TINY)[None] + log_norm[None] - 0.5 * maha


def log_prob(gmm: DiagGMM, x: jax.Array) -> jax.Array:
    """Mixture log-density of x [N, D]: [N]."""
    return jax.nn.logsumexp(component_log_probs(gmm, x), axis=-1)


def em_step(gmm: DiagGMM, x: jax.Array, mask: jax.Array, reg: float
            ) -> tuple[DiagGMM, jax.Array]:
    """One EM iteration on the rows of x [N, D] weighted by mask [N].

    E: responsibilities r [N, K] = softmax_k(component log-probs). M: with n_k = sum m r,
    weight_k = n_k / sum m, mean_k = sum m r x / n_k, var_k = sum m r (x - mean_k)^2 / n_k + reg
    (``reg`` keeps variances of collapsed or constant code units positive). A component
    that lost all its mass keeps its previous mean and variance.

    Returns:
      (updated mixture, masked mean log-likelihood of x under the *input* mixture).
    """
    lp = component_log_probs(gmm, x)  # [N, K]
    ll = jax.nn.logsumexp(lp, axis=-1)  # [N]
    r = jnp.exp(lp - ll[:, None]) * mask[:, None]  # [N, K]
    total = jnp.maximum(jnp.sum(mask), _TINY)
    nk = jnp.sum(r, axis=0)  # [K]
    safe = jnp.maximum(nk, _TINY)[:, None]
    means = (r.T @ x) / safe
    variances = (r.T @ (x * x)) / safe - means * means
    variances = jnp.maximum(variances, 0.0) + reg
    alive = (nk > 1e-6)[:, None]
    new = DiagGMM(weights=nk / total, means=jnp.where(alive, means, gmm.means),
                  variances=jnp.where(alive, variances, gmm.variances))
    return new, jnp.sum(ll * mask) / total


def init(key: jax.Array, x: jax.Array, mask: jax.Array, num_components: int, reg: float
         ) -> DiagGMM:
    """K distinct member rows as means, the members' variance for every component.

    The group must have at least ``num_components`` members (checked by callers on host).
    """
    total = jnp.maximum(jnp.sum(mask), _TINY)
    idx = jax.random.choice(key, x.shape[0], (num_components,), replace=False,
                            p=mask / total)
    mean = jnp.sum(x * mask[:, None], axis=0) / total
    var = jnp.sum((x - mean) ** 2 * mask[:, None], axis=0) / total + reg
    return DiagGMM(weights=jnp.full((num_components,), 1.0 / num_components),
                   means=x[idx], variances=jnp.broadcast_to(var, (num_components, x.shape[1])))


def fit(key: jax.Array, x: jax.Array, mask: jax.Array, num_components: int, steps: int,
        reg: float) -> tuple[DiagGMM, jax.Array]:
    """EM from ``init`` for ``steps`` iterations (a ``lax.scan``).

    Args:
      key: picks the initial means.
      x: [N, D] data. mask: [N] membership weights in [0, 1].
      num_components, steps: static.

    Returns:
      (mixture, log-likelihood per iteration [steps], non-decreasing up to float error).
    """
    gmm0 = init(key, x, mask, num_components, reg)

    def body(gmm, _):
        return em_step(gmm, x, mask, reg)

    return jax.lax.scan(body, gmm0, None, length=steps)


def fit_groups(keys: jax.Array, x: jax.Array, masks: jax.Array, num_components: int,
               steps: int, reg: float) -> tuple[DiagGMM, jax.Array]:
    """``fit`` for G groups at once: keys [G], x [N, D] shared, masks [G, N].

    Returns:
      (mixtures with a leading [G] axis, log-likelihoods [G, steps]).
    """
    return jax.vmap(fit, in_axes=(0, None, 0, None, None, None))(
        keys, x, masks, num_components, steps, reg)


fit_groups_jit = jax.jit(fit_groups, static_argnums=(3, 4))


def sample(key: jax.Array, gmm: DiagGMM, n: int) -> jax.Array:
    """n draws [n, D] from one mixture (``n`` static)."""
    kc, kn = jax.random.split(key)
    comp = jax.random.categorical(kc, jnp.log(gmm.weights + _TINY), shape=(n,))
    eps = jax.random.normal(kn, (n, gmm.means.shape[-1]))
    return gmm.means[comp] + jnp.sqrt(gmm.variances[comp]) * eps


def select(gmms: DiagGMM, g: int | jax.Array) -> DiagGMM:
    """Group g's mixture from mixtures stacked over groups."""
    return jax.tree.map(lambda a: a[g], gmms)
