"""Group-restricted Markov chains: exact samples of the generator's faces of one group.

The target of a chain for group g is the prior N(0, I) on z restricted to the set where the
group test passes: exactly the distribution of the faces binned rejection sampling gives
for g. Each chain step proposes a preconditioned Crank-Nicolson move

  z' = sqrt(1 - b_c^2) P z + b_c P xi + sqrt(1 - b_f^2) (I - P) z + b_f (I - P) xi,
  xi ~ N(0, I),   P = Q Q^T  (Q [D, k] orthonormal: the group's constrained directions)

which leaves N(0, I) invariant for any Q, b_c, b_f in (0, 1] (it is an independent
autoregressive move in each of two orthogonal subspaces), so the Metropolis-Hastings
acceptance reduces to the group test itself: a proposal is kept iff its face is in the
group. Started from a face of the group found by the shared stream (itself an exact draw),
a chain is in its stationary distribution from its first step; only the dependence between
its states has to be managed, by thinning (planner.py). ``b_c`` is small along the
directions the group constrains (measured from the stream, ``directions``) and ``b_f`` large
along the rest, which the group barely constrains: there a single accepted move draws the
coordinates afresh. Q only changes efficiency, never correctness.

All chains of all groups advance together: ``C`` chains, each with its own target (masks
``[C, K]``), subspace ``Q [C, D, k]`` and step sizes, ``T`` steps in one ``lax.scan``, one
batched render-and-judge per step. Step ``t`` of chunk ``r`` uses key
``fold_in(fold_in(root, r), t)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair.judge import render, sizing


def pcn_propose(key: jax.Array, z: jax.Array, q: jax.Array, b_c: jax.Array, b_f: jax.Array
                ) -> jax.Array:
    """One subspace pCN proposal per chain.

    Args:
      key: PRNG key.
      z: [C, D] current states.
      q: [C, D, k] orthonormal columns (k may be 0: plain pCN with step b_f).
      b_c, b_f: [C] step sizes in the constrained span and its complement, in (0, 1].

    Returns:
      [C, D] proposals.
    """
    xi = jax.random.normal(key, z.shape, z.dtype)

    def split(x):
        c = jnp.einsum("cdk,cek,ce->cd", q, q, x)  # P x
        return c, x - c

    zc, zf = split(z)
    xc, xf = split(xi)
    keep_c, keep_f = jnp.sqrt(1.0 - b_c ** 2)[:, None], jnp.sqrt(1.0 - b_f ** 2)[:, None]
    return keep_c * zc + b_c[:, None] * xc + keep_f * zf + b_f[:, None] * xf


def is_free_move(t, period):
    """Step t of a chunk moves in the free complement (else in the constrained span): the
    last step of every ``period`` (>= 2), so a fraction 1 / period of the moves."""
    return t % period == period - 1


def independence_propose(key: jax.Array, z: jax.Array, q: jax.Array, mu: jax.Array,
                         chol: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A fresh draw of each chain's constrained coordinates c = Q^T z from a fitted Gaussian
    q(c) = N(mu, L L^T), the rest of z kept; with its Metropolis-Hastings log ratio for the
    prior N(0, I): log p(c') - log p(c) + log q(c) - log q(c').

    Columns of Q that are zero (a span narrower than k) must have mu 0 and L's diagonal 1
    there: p and q then agree on them and they cancel.

    Args:
      key: PRNG key.
      z: [C, D] current states.
      q: [C, D, k] orthonormal (or zero) columns.
      mu: [C, k]; chol: [C, k, k] lower-triangular.

    Returns:
      (proposals [C, D], log ratios [C]).
    """
    c = jnp.einsum("cdk,cd->ck", q, z)
    eps = jax.random.normal(key, mu.shape, mu.dtype)
    c_new = mu + jnp.einsum("ckj,cj->ck", chol, eps)

    def log_q(x):
        r = jax.vmap(lambda L, v: jax.scipy.linalg.solve_triangular(L, v, lower=True))(
            chol, x - mu)
        return -0.5 * jnp.sum(r * r, axis=-1)

    def log_p(x):
        return -0.5 * jnp.sum(x * x, axis=-1)

    prop = z + jnp.einsum("cdk,ck->cd", q, c_new - c)
    return prop, log_p(c_new) - log_p(c) + log_q(c) - log_q(c_new)


def make_chain_run(accepts: Callable, steps: int, micro: int = 0):
    """Jitted ``(g_state, c_state, key, targets [C], q [C, D, k], mu [C, k], chol [C, k, k],
    b_f [C], period [C], z [C, D]) -> (z [C, D], history [T, C, D], moved [T, C] bool)``: T
    steps of every chain.

    ``accepts(g_state, c_state, z [C, D], targets) -> [C] bool`` is the group test of each
    chain's proposal (``Judge.accepts``; any pure indicator in tests). Each step moves in
    one subspace only. In the constrained span (a few directions) the constrained
    coordinates are drawn afresh from a Gaussian fitted to the group's faces there
    (``independence_propose``), kept by the Metropolis-Hastings test against the prior and
    the group test; in its complement (the steps where ``is_free_move``) a
    preconditioned Crank-Nicolson move of step ``b_f`` (``pcn_propose``), which keeps the
    prior, so the group test alone decides. Each kernel leaves the target invariant, so any
    schedule of them does. Where the span is right, free moves are almost always accepted
    with a step of 1 (a fresh draw of every unconstrained coordinate), and where the fit is
    good, constrained moves are independent draws: either way the chain forgets its start
    in a few steps (``period`` and thinning from the measured autocorrelations,
    planner.py). ``micro`` (< C): each step judges ``micro`` proposals at a time
    (``render.chunked``: the same proposals, the memory of ``micro``).
    """

    @jax.jit
    def run(g_state, c_state, key, targets, q, mu, chol, b_f, period, z):
        zero = jnp.zeros_like(b_f)

        def body(z, t):
            free = is_free_move(t, period)
            k_move, k_mh = jax.random.split(jax.random.fold_in(key, t))
            free_prop = pcn_propose(k_move, z, q, zero, b_f)
            span_prop, log_ratio = independence_propose(k_move, z, q, mu, chol)
            prop = jnp.where(free[:, None], free_prop, span_prop)
            mh = free | (jnp.log(jax.random.uniform(k_mh, free.shape)) < log_ratio)
            ok = render.chunked(lambda r: accepts(g_state, c_state, *r), (prop, targets),
                                micro) & mh
            z = jnp.where(ok[:, None], prop, z)
            return z, (z, ok)

        z, (hist, moved) = jax.lax.scan(body, z, jnp.arange(steps))
        return z, hist, moved

    return run


def run_factory(accepts: Callable, steps: int, g_state, c_state, targets, z_dim: int,
                k: int):
    """``micro -> (make_chain_run(accepts, steps, micro), abstract arguments)`` for
    ``jaxfair.judge.sizing.size_step``: C = len(targets) chains (stacked targets [C]), a
    span of width k."""
    c, f32 = jax.tree.leaves(targets)[0].shape[0], jnp.float32
    args = (sizing.abstract(g_state), sizing.abstract(c_state), jax.random.key(0),
            sizing.abstract(targets), jax.ShapeDtypeStruct((c, z_dim, k), f32),
            jax.ShapeDtypeStruct((c, k), f32), jax.ShapeDtypeStruct((c, k, k), f32),
            jax.ShapeDtypeStruct((c,), f32), jax.ShapeDtypeStruct((c,), jnp.int32),
            jax.ShapeDtypeStruct((c, z_dim), f32))

    def factory(micro):
        return make_chain_run(accepts, steps, micro), args

    return factory


def fit_span(c: np.ndarray, k: int, k_eff: int, inflate: float = 1.5
             ) -> tuple[np.ndarray, np.ndarray]:
    """(mu [k], chol [k, k]) of the proposal of a group's constrained coordinates, from its
    faces' coordinates c [n, k]: their mean and covariance (+0.01 I), widened by ``inflate``
    (a proposal a little wider than the target keeps the independence sampler from sticking
    in the target's tails). Columns beyond ``k_eff`` (zero span columns) get N(0, 1), the
    prior's, so they cancel in the ratio."""
    mu, chol = np.zeros(k), np.eye(k)
    if len(c) == 0 or k_eff == 0:
        return mu.astype(np.float32), chol.astype(np.float32)
    x = np.asarray(c, np.float64)[:, :k_eff]
    mu[:k_eff] = x.mean(axis=0)
    cov = np.cov(x.T).reshape(k_eff, k_eff) if len(x) > 1 else np.eye(k_eff) * 0.25
    cov = cov + 0.01 * np.eye(k_eff)
    chol[:k_eff, :k_eff] = np.linalg.cholesky(cov) * inflate
    return mu.astype(np.float32), chol.astype(np.float32)


def schedule(rho_in: float, rho_out: float, free_fraction: float, rho_max: float,
             max_thin: int) -> tuple[int, int]:
    """(period, thin) for the next chunk from this chunk's measured per-step lag-1
    autocorrelations inside the constrained span and outside it.

    A move of the other kind leaves a subspace unchanged (correlation 1), so with a fraction
    f of free moves the per-step values mix the two: ``rho_in = f + (1 - f) r_c`` and
    ``rho_out = (1 - f) + f r_f``, whence the per-move correlations r_c, r_f. ``k_c``
    constrained and ``k_f`` free moves bring each below ``rho_max``; the period puts them in
    that proportion and ``thin`` covers both.
    """
    f = min(max(free_fraction, 1e-6), 1 - 1e-6)
    r_c = float(np.clip((rho_in - f) / (1.0 - f), 0.0, 0.999))
    r_f = float(np.clip((rho_out - (1.0 - f)) / f, 0.0, 0.999))
    k_c = thinning(r_c, rho_max, max_thin)
    k_f = thinning(r_f, rho_max, max_thin)
    period = max(2, round((k_c + k_f) / k_f))
    thin = max(math.ceil(k_c * period / (period - 1)), k_f * period)
    return period, int(min(max_thin, thin))


def directions(z: np.ndarray, scores: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """The directions of z along which group scores change: an orthonormal basis [D, k].

    Ridge regression of each score column (e.g. the log-odds of the group's class mass on
    every attribute the group constrains) on z, over stream samples; the k coefficient
    vectors, orthonormalised. With few samples the estimate is noisy, which costs
    acceptance or mixing speed, never exactness.

    Args:
      z: [N, D] stream samples.
      scores: [N, k] their scores.
      ridge: L2 penalty (in units of sample count: comparable at any N).
    """
    z = np.asarray(z, np.float64)
    y = np.asarray(scores, np.float64)
    y = y - y.mean(axis=0)
    n, d = z.shape
    coef = np.linalg.solve(z.T @ z + ridge * n * np.eye(d) / d, z.T @ y)  # [D, k]
    norms = np.linalg.norm(coef, axis=0)
    if not (norms > 0).any():
        return np.zeros((d, 0), np.float32)
    # Columns often span fewer directions than they number (the classes of one attribute
    # move along one axis): keep the ones the data supports, in order of strength.
    u, sv, _ = np.linalg.svd(coef / np.maximum(norms, 1e-30), full_matrices=False)
    return u[:, sv > 0.1 * sv[0]].astype(np.float32)


def lag1_autocorrelation(history: np.ndarray, variance: float | None = None) -> float:
    """Lag-1 autocorrelation of chain states from their variogram:
    ``1 - E[(x_{t+1} - x_t)^2] / (2 var)``, averaged over chains and coordinates.

    The stationary ``variance`` per coordinate should come from outside the chains (the
    prior's 1 for coordinates the group leaves free, exact stream draws of the group for the
    constrained ones): chains started from a few nearby faces cover little of the group in
    a short window, and their own spread would make them look fast. Without it the pooled
    variance of the history is used.

    Args:
      history: [T, C, D] states of C chains over T steps (T >= 2).
      variance: stationary variance per coordinate, or None.

    Returns:
      rho in [0, 0.999] (0.999 also when nothing moved and nothing is known).
    """
    x = np.asarray(history, np.float64)
    if variance is None:
        variance = float(np.mean(np.var(x.reshape(-1, x.shape[-1]), axis=0)))
    if variance <= 0:
        return 0.999
    step = float(np.mean(np.square(np.diff(x, axis=0))))
    return float(np.clip(1.0 - step / (2.0 * variance), 0.0, 0.999))


def thinning(rho: float, rho_max: float, max_thin: int) -> int:
    """Steps between kept states so that their correlation is at most ``rho_max`` under an
    AR(1) model with lag-1 correlation ``rho``: ceil(log rho_max / log rho), in [1, max_thin]."""
    if rho <= rho_max:
        return 1
    return int(min(max_thin, max(1, np.ceil(np.log(rho_max) / np.log(rho)))))
