"""Gaussian mixtures (diagonal or full covariance) fitted by EM, in pure JAX (no scikit-learn).

Groups share one data matrix and differ by a membership mask, so fitting every group is one
``vmap`` over (key, mask) of the single-group fit, and one ``lax.scan`` over EM iterations:

  gmms, ll = fit_groups(keys, x, masks, num_components=4, steps=100, reg=1e-3,
                        covariance="full")
  codes = sample(key, select(gmms, g), 100)   # [100, D] from group g

Shapes: data ``x [N, D]``, mask ``[N]`` (1 = the row belongs to the group, 0 = ignored),
mixture ``weights [K]``, ``means [K, D]`` and either ``variances [K, D]`` (``DiagGMM``) or
``covariances [K, D, D]`` (``FullGMM``); a leading ``[G]`` when stacked over groups. Every
function below takes either kind: the mixture's type is static under ``jit``.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

COVARIANCES = ("diag", "full")

_TINY = 1e-10


@flax.struct.dataclass
class DiagGMM:
    """A mixture of K diagonal Gaussians in D dimensions (pytree of arrays)."""

    weights: jax.Array  # [K], sums to 1
    means: jax.Array  # [K, D]
    variances: jax.Array  # [K, D], > 0


@flax.struct.dataclass
class FullGMM:
    """A mixture of K full-covariance Gaussians in D dimensions (pytree of arrays)."""

    weights: jax.Array  # [K], sums to 1
    means: jax.Array  # [K, D]
    covariances: jax.Array  # [K, D, D], symmetric positive definite


GMM = DiagGMM | FullGMM


def check_covariance(covariance: str) -> None:
    """Raises ValueError (one line) for an unknown covariance type."""
    if covariance not in COVARIANCES:
        raise ValueError(f"unknown covariance type {covariance!r}; choose from "
                         f"{', '.join(COVARIANCES)}")


def covariance_type(gmm: GMM) -> str:
    """'full' or 'diag'."""
    return "full" if isinstance(gmm, FullGMM) else "diag"


def component_log_probs(gmm: GMM, x: jax.Array) -> jax.Array:
    """log(weight_k) + log N(x_n | mean_k, cov_k): [N, K] for x [N, D].

    Full covariances use their Cholesky factor L (cov = L L^T): the Mahalanobis term is
    |L^-1 (x - mean)|^2 and log det cov = 2 sum log diag L, which stay accurate where an
    explicit covariance inverse or determinant would not. L^-1 comes from one triangular
    solve against the identity (D x D per component), then every row is a matmul: solving
    for the N rows directly made a full EM fit ~10x slower on CPU (measured on the demo).
    """
    d = x.shape[-1]
    diff = x[:, None, :] - gmm.means[None]  # [N, K, D]
    if isinstance(gmm, FullGMM):
        chol = jnp.linalg.cholesky(gmm.covariances)  # [K, D, D]
        chol_inv = jax.scipy.linalg.solve_triangular(
            chol, jnp.broadcast_to(jnp.eye(d, dtype=chol.dtype), chol.shape), lower=True)
        y = jnp.einsum("kde,nke->nkd", chol_inv, diff)  # [N, K, D]
        maha = jnp.sum(y * y, axis=-1)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    else:
        maha = jnp.sum(diff * diff / gmm.variances[None], axis=-1)
        log_det = jnp.sum(jnp.log(gmm.variances), axis=-1)  # [K]
    log_norm = -0.5 * (d * jnp.log(2 * jnp.pi) + log_det)
    return jnp.log(gmm.weights + _TINY)[None] + log_norm[None] - 0.5 * maha


def log_prob(gmm: GMM, x: jax.Array) -> jax.Array:
    """Mixture log-density of x [N, D]: [N]."""
    return jax.nn.logsumexp(component_log_probs(gmm, x), axis=-1)


def em_step(gmm: GMM, x: jax.Array, mask: jax.Array, reg: float) -> tuple[GMM, jax.Array]:
    """One EM iteration on the rows of x [N, D] weighted by mask [N].

    E: responsibilities r [N, K] = softmax_k(component log-probs). M: with n_k = sum m r,
    weight_k = n_k / sum m, mean_k = sum m r x / n_k, and
    diag: var_k = sum m r (x - mean_k)^2 / n_k + reg;
    full: cov_k = sum m r (x - mean_k)(x - mean_k)^T / n_k + reg I
    (``reg`` keeps covariances of collapsed or constant code units positive definite). A
    component that lost all its mass keeps its previous mean and covariance.

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
    alive = nk > 1e-6
    means = jnp.where(alive[:, None], means, gmm.means)
    if isinstance(gmm, FullGMM):
        diff = x[:, None, :] - means[None]  # [N, K, D]: centred first (no E[xx^T] - mm^T)
        cov = jnp.einsum("nk,nkd,nke->kde", r, diff, diff) / safe[:, :, None]
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2)) + reg * jnp.eye(x.shape[1])
        new = FullGMM(weights=nk / total, means=means,
                      covariances=jnp.where(alive[:, None, None], cov, gmm.covariances))
    else:
        variances = (r.T @ (x * x)) / safe - means * means
        variances = jnp.maximum(variances, 0.0) + reg
        new = DiagGMM(weights=nk / total, means=means,
                      variances=jnp.where(alive[:, None], variances, gmm.variances))
    return new, jnp.sum(ll * mask) / total


def init(key: jax.Array, x: jax.Array, mask: jax.Array, num_components: int, reg: float,
         covariance: str = "diag") -> GMM:
    """K distinct member rows as means, the members' (diagonal) variance for every component.

    A full mixture starts from the same diagonal covariance: EM learns the correlations.
    The group must have at least ``num_components`` members (checked by callers on host).
    """
    check_covariance(covariance)
    total = jnp.maximum(jnp.sum(mask), _TINY)
    idx = jax.random.choice(key, x.shape[0], (num_components,), replace=False,
                            p=mask / total)
    mean = jnp.sum(x * mask[:, None], axis=0) / total
    var = jnp.sum((x - mean) ** 2 * mask[:, None], axis=0) / total + reg
    weights = jnp.full((num_components,), 1.0 / num_components)
    variances = jnp.broadcast_to(var, (num_components, x.shape[1]))
    if covariance == "full":
        return FullGMM(weights=weights, means=x[idx],
                       covariances=jax.vmap(jnp.diag)(variances))
    return DiagGMM(weights=weights, means=x[idx], variances=variances)


def fit(key: jax.Array, x: jax.Array, mask: jax.Array, num_components: int, steps: int,
        reg: float, covariance: str = "diag") -> tuple[GMM, jax.Array]:
    """EM from ``init`` for ``steps`` iterations (a ``lax.scan``).

    Args:
      key: picks the initial means.
      x: [N, D] data. mask: [N] membership weights in [0, 1].
      num_components, steps, covariance ('diag' or 'full'): static.

    Returns:
      (mixture, log-likelihood per iteration [steps], non-decreasing up to float error).
    """
    gmm0 = init(key, x, mask, num_components, reg, covariance)

    def body(gmm, _):
        return em_step(gmm, x, mask, reg)

    return jax.lax.scan(body, gmm0, None, length=steps)


def fit_groups(keys: jax.Array, x: jax.Array, masks: jax.Array, num_components: int,
               steps: int, reg: float, covariance: str = "diag") -> tuple[GMM, jax.Array]:
    """``fit`` for G groups at once: keys [G], x [N, D] shared, masks [G, N].

    Returns:
      (mixtures with a leading [G] axis, log-likelihoods [G, steps]).
    """
    return jax.vmap(fit, in_axes=(0, None, 0, None, None, None, None))(
        keys, x, masks, num_components, steps, reg, covariance)


fit_groups_jit = jax.jit(fit_groups, static_argnums=(3, 4, 6))


def sample(key: jax.Array, gmm: GMM, n: int) -> jax.Array:
    """n draws [n, D] from one mixture (``n`` static): mean + L eps, L L^T = covariance."""
    kc, kn = jax.random.split(key)
    comp = jax.random.categorical(kc, jnp.log(gmm.weights + _TINY), shape=(n,))
    eps = jax.random.normal(kn, (n, gmm.means.shape[-1]))
    if isinstance(gmm, FullGMM):
        chol = jnp.linalg.cholesky(gmm.covariances)[comp]  # [n, D, D]
        return gmm.means[comp] + jnp.einsum("nde,ne->nd", chol, eps)
    return gmm.means[comp] + jnp.sqrt(gmm.variances[comp]) * eps


def component(gmm: GMM, k: int | jax.Array) -> GMM:
    """Component k of one mixture, as a mixture of one (weight 1)."""
    one = jax.tree.map(lambda a: a[k][None], gmm)
    return one.replace(weights=jnp.ones_like(one.weights))


def select(gmms: GMM, g: int | jax.Array) -> GMM:
    """Group g's mixture from mixtures stacked over groups."""
    return jax.tree.map(lambda a: a[g], gmms)
