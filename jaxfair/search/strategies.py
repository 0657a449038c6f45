"""Search strategies with one shape: evosax algorithms and two batched baselines.

Every strategy holds only fixed settings and offers pure methods on flax.struct states
(population size P, candidate length D, all in normalised search coordinates, see spaces):

  state = s.init(key, u0 [P, D], loss0 [P], ok0 [P], params)   # from an evaluated prior batch
  u, state = s.ask(key, state, prior_u [P, D], params)          # prior_u: fresh prior samples
  state = s.tell(key, u, loss [P], ok [P] bool, state, params)
  params = s.make_params(prior)                                 # arrays, a jit argument
  state = s.with_spread(state, spread [D])  # only where s.adapts_spread: per-dim spread

Distribution-based evosax algorithms start from the best candidate of the initial batch;
population-based ones (SimpleGA, DE, PSO) from the whole evaluated batch. ``prior_u`` is
used only by the baselines (XLA drops it otherwise); ``ok`` (accepted) only by branching.
``with_spread`` replaces the initial step size ``sigma`` by a per-dimension spread (the
hybrid start, ``jaxfair.lab.hybrid``): Sep_CMA_ES and CMA_ES get step size rms(spread)
and the diagonal covariance (spread / rms)^2, SNES its std vector = spread, LM_MA_ES (an
isotropic step size with a learned low-rank shape) rms(spread). Open_ES (a fixed std
schedule), the population-based algorithms (their spread is the population's) and the
baselines have ``adapts_spread = False``.

Registry (``STRATEGIES``, read-only): evosax Sep_CMA_ES (default), CMA_ES (z and w only),
SNES, Open_ES, LM_MA_ES, SimpleGA, DE, PSO; ``branching`` (the original method as a frontier
of P candidates per generation) and ``rejection`` (plain prior sampling).

Example:
  s = build("Sep_CMA_ES", space, population_size=16, sigma=0.5)
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import evosax.algorithms as ea
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxfair.search import spaces


class EvosaxStrategy:
    """An evosax algorithm behind the common init/ask/tell shape."""

    def __init__(self, name: str, algo: Any, population_based: bool, params: Any,
                 spread_setter: Callable[[Any, jax.Array], Any] | None = None):
        self.name = name
        self.algo = algo
        self.population_size = algo.population_size
        self.population_based = population_based
        self._params = params
        self._spread_setter = spread_setter
        self.adapts_spread = spread_setter is not None

    def make_params(self, prior: spaces.Prior) -> Any:
        del prior  # evosax works in normalised coordinates: nothing generator-specific
        return self._params

    def init(self, key, u0, loss0, ok0, params):
        del ok0
        if self.population_based:
            return self.algo.init(key, u0, loss0, params)
        return self.algo.init(key, u0[jnp.argmin(loss0)], params)

    def with_spread(self, state, spread):
        """``state`` (one search) with per-dimension spread [D] instead of sigma."""
        if self._spread_setter is None:
            raise ValueError(f"strategy {self.name} has no adaptable spread")
        return self._spread_setter(state, spread)

    def ask(self, key, state, prior_u, params):
        del prior_u
        return self.algo.ask(key, state, params)

    def tell(self, key, u, loss, ok, state, params):
        del ok
        state, _ = self.algo.tell(key, u, loss, state, params)
        return state


@flax.struct.dataclass
class RejectionState:
    generation: jax.Array


class Rejection:
    """Plain sampling from the prior: every generation is a fresh prior batch."""

    name = "rejection"
    adapts_spread = False

    def __init__(self, population_size: int):
        self.population_size = population_size

    def make_params(self, prior: spaces.Prior) -> None:
        return None

    def init(self, key, u0, loss0, ok0, params):
        return RejectionState(jnp.int32(0))

    def ask(self, key, state, prior_u, params):
        return prior_u, state

    def tell(self, key, u, loss, ok, state, params):
        return state.replace(generation=state.generation + 1)


@flax.struct.dataclass
class BranchingParams:
    step: jax.Array  # mutation scale in search coordinates


@flax.struct.dataclass
class BranchingState:
    """Queue of pending candidates (FIFO), lineage table, and the batch being evaluated.

    queue_*: [Q] (u: [Q, D]); lineages: roots [L, D], failures [L], pops [L] (candidates
    of the lineage evaluated so far, its root being pop 1), alive [L]; pending_lineage [P]
    (-1: a root search from the prior).
    """

    queue_u: jax.Array
    queue_lineage: jax.Array
    queue_order: jax.Array
    queue_valid: jax.Array
    roots: jax.Array
    failures: jax.Array
    pops: jax.Array
    alive: jax.Array
    pending_lineage: jax.Array
    serial: jax.Array
    roots_found: jax.Array
    dropped: jax.Array


class Branching:
    """The original method (youneednodataset ``mutate_z`` / ``mutate_new``) as a batched
    frontier.

    Roots are found by rejection: a prior sample in the target group starts a lineage (pop
    1). Every accepted candidate of a lineage gets ``children`` mutants (z:
    ``+ N(0, 0.5^2)``; w/wplus: ``+ U(-0.3, 0.3)`` per element, in W units), each queued
    only if it lies farther from the root than its parent (the original's
    ``norm(temp - w) > norm(vec - w)``, checked before rendering, so no render is spent on a
    child the original would not queue). A rejected candidate counts a failure; a lineage
    is dropped after ``max_failures`` or when nothing of it is left in the queue. After
    ``max_pops`` candidates of a lineage were evaluated, its accepted candidates spawn no
    more children (the original's ``if count_iter < n_iterations``: 5,000 in W+, unlimited
    in z); what is queued still runs, then the lineage ends. Each generation pops the P
    oldest queued candidates; free places are filled with prior samples (the root search).
    Queue overflow is counted in ``dropped``.

    Departures from the original, which has no classifier-only analogue: it counts as a
    failure a render in which no face is detected; here a failure is a rejected candidate.
    Its z check uses raw Euclidean norms; here ``spaces.distance`` (z on its sphere, what
    the mapping sees; the same ordering as raw norms in w/wplus).

    Args:
      max_pops: pops per lineage after which it stops branching; None: 5,000 in wplus,
        unlimited (0) in z and w.
    """

    name = "branching"
    adapts_spread = False

    def __init__(self, space: spaces.Space, population_size: int, children: int = 3,
                 max_failures: int = 20, queue_factor: int = 4, max_pops: int | None = None):
        if max_pops is None:
            max_pops = 5000 if space.name == "wplus" else 0
        if max_pops < 0:
            raise ValueError(f"max_pops must be >= 0 (0: unlimited), got {max_pops}")
        self.space = space
        self.population_size = population_size
        self.children = children
        self.max_failures = max_failures
        self.max_pops = max_pops
        self.queue_size = queue_factor * population_size
        self.num_lineages = population_size
        self.uniform = space.name != "z"
        self.mutation = 0.3 if self.uniform else 0.5

    def make_params(self, prior: spaces.Prior) -> BranchingParams:
        if self.uniform:  # U(-0.3, 0.3) in W units = 0.3 / w_std in search units
            return BranchingParams(jnp.float32(self.mutation) / prior.w_std)
        return BranchingParams(jnp.float32(self.mutation))

    def init(self, key, u0, loss0, ok0, params):
        q, p, d, lin = self.queue_size, self.population_size, u0.shape[-1], self.num_lineages
        state = BranchingState(
            queue_u=jnp.zeros((q, d), jnp.float32), queue_lineage=jnp.zeros((q,), jnp.int32),
            queue_order=jnp.zeros((q,), jnp.int32), queue_valid=jnp.zeros((q,), bool),
            roots=jnp.zeros((lin, d), jnp.float32), failures=jnp.zeros((lin,), jnp.int32),
            pops=jnp.zeros((lin,), jnp.int32), alive=jnp.zeros((lin,), bool),
            pending_lineage=jnp.full((p,), -1, jnp.int32), serial=jnp.int32(0),
            roots_found=jnp.int32(0), dropped=jnp.int32(0))
        # The initial batch was a root search: its accepted samples become roots.
        return self.tell(key, u0, loss0, ok0, state, params)

    def ask(self, key, state, prior_u, params):
        live = state.queue_valid & state.alive[state.queue_lineage]
        order = jnp.where(live, state.queue_order, jnp.iinfo(jnp.int32).max)
        idx = jnp.argsort(order)[:self.population_size]
        take = live[idx]
        u = jnp.where(take[:, None], state.queue_u[idx], prior_u)
        state = state.replace(
            queue_valid=live.at[idx].set(live[idx] & ~take),  # dead lineages leave too
            pending_lineage=jnp.where(take, state.queue_lineage[idx], -1))
        return u, state

    def tell(self, key, u, loss, ok, state, params):
        n_lin, p = self.num_lineages, u.shape[0]
        searching = state.pending_lineage < 0
        lin = jnp.maximum(state.pending_lineage, 0)
        member = ~searching & state.alive[lin]
        # Pop number of each member within its lineage (batch order = queue order).
        earlier = jnp.tril(jnp.ones((p, p), bool), k=-1)
        same = earlier & (lin[:, None] == lin[None, :]) & member[None, :]
        pop_no = state.pops[lin] + jnp.sum(same, axis=-1, dtype=jnp.int32) + 1
        pops = state.pops.at[lin].add(member.astype(jnp.int32))
        failures = state.failures.at[lin].add((member & ~ok).astype(jnp.int32))
        alive = state.alive & (failures < self.max_failures)
        # Members of a lineage dropped just now do not branch: its slot may take a new root.
        member_alive = member & alive[lin]
        # Forget the queued children of dropped lineages before their slots are reused.
        queue_valid = state.queue_valid & alive[state.queue_lineage]
        # New roots take free lineage slots in batch order.
        new_root = searching & ok
        free_slots = jnp.argsort(alive)  # False (free) first, stable
        rank = jnp.cumsum(new_root) - 1
        placed = new_root & (rank < jnp.sum(~alive))
        slot = jnp.where(placed, free_slots[jnp.clip(rank, 0, n_lin - 1)], n_lin)
        roots = state.roots.at[slot].set(u, mode="drop")
        alive = alive.at[slot].set(True, mode="drop")
        failures = failures.at[slot].set(0, mode="drop")
        pops = pops.at[slot].set(1, mode="drop")
        # Who branches: new roots (pop 1) and accepted members before the pop limit.
        limit = (pop_no < self.max_pops) if self.max_pops else jnp.ones((p,), bool)
        spawn = placed | (member_alive & ok & limit)
        parent = jnp.where(placed, slot, lin)
        root = jnp.where(placed[:, None], u, state.roots[lin])
        k = self.children
        shape = (p, k, u.shape[1])
        if self.uniform:
            noise = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
        else:
            noise = jax.random.normal(key, shape)
        kids = u[:, None, :] + params.step * noise  # [P, k, D]
        parent_dist = spaces.distance(self.space, u, root)  # 0 for a new root
        farther = spaces.distance(self.space, kids, root[:, None, :]) > parent_dist[:, None]
        kid_spawn = (spawn[:, None] & farther).reshape(-1)
        kids = kids.reshape(-1, u.shape[1])
        free_q = jnp.argsort(queue_valid)
        qrank = jnp.cumsum(kid_spawn) - 1
        fits = kid_spawn & (qrank < jnp.sum(~queue_valid))
        qslot = jnp.where(fits, free_q[jnp.clip(qrank, 0, self.queue_size - 1)],
                          self.queue_size)
        queue_lineage = state.queue_lineage.at[qslot].set(jnp.repeat(parent, k), mode="drop")
        queue_valid = queue_valid.at[qslot].set(True, mode="drop")
        # A lineage with nothing left to evaluate is finished: its slot becomes free.
        alive = alive & jnp.zeros((n_lin,), bool).at[queue_lineage].max(queue_valid)
        return state.replace(
            queue_u=state.queue_u.at[qslot].set(kids, mode="drop"),
            queue_lineage=queue_lineage,
            queue_order=state.queue_order.at[qslot].set(state.serial + qrank.astype(jnp.int32),
                                                        mode="drop"),
            queue_valid=queue_valid,
            roots=roots, failures=failures, pops=pops, alive=alive,
            serial=state.serial + jnp.sum(kid_spawn, dtype=jnp.int32),
            roots_found=state.roots_found + jnp.sum(placed, dtype=jnp.int32),
            dropped=state.dropped + jnp.sum(kid_spawn & ~fits, dtype=jnp.int32))


def _rms(spread: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(spread)))


def _diagonal_spread(state, spread):
    """Step size rms(spread), covariance diag((spread / rms)^2): the samples' per-dimension
    std is then ``spread`` (Sep_CMA_ES keeps C as [D], CMA_ES as [D, D] with its B, D)."""
    std = _rms(spread)
    shape = spread / std
    if state.C.ndim == 1:
        return state.replace(std=std, C=jnp.square(shape), D=shape)
    return state.replace(std=std, C=jnp.diag(jnp.square(shape)), D=shape,
                         B=jnp.eye(spread.shape[0], dtype=state.B.dtype))


def _vector_spread(state, spread):
    return state.replace(std=spread.astype(state.std.dtype))


def _isotropic_spread(state, spread):
    return state.replace(std=_rms(spread).astype(state.std.dtype))


def _evosax(cls, population_based: bool, settings: Callable[[float, float], dict] | None = None,
            std_param: bool = True, spread_setter: Callable[[Any, jax.Array], Any] | None = None):
    def build(space: spaces.Space, population_size: int, sigma: float, learning_rate: float):
        kw = settings(sigma, learning_rate) if settings else {}
        algo = cls(population_size=population_size, solution=jnp.zeros((space.dim,)), **kw)
        params = algo.default_params
        if std_param:
            params = params.replace(std_init=jnp.float32(sigma))
        return EvosaxStrategy(cls.__name__, algo, population_based, params, spread_setter)
    return build


def _baseline(cls):
    def build(space, population_size, sigma, learning_rate):
        del sigma, learning_rate
        if cls is Rejection:
            return Rejection(population_size)
        return cls(space, population_size)
    return build


STRATEGIES = types.MappingProxyType({
    "Sep_CMA_ES": _evosax(ea.Sep_CMA_ES, False, spread_setter=_diagonal_spread),
    "CMA_ES": _evosax(ea.CMA_ES, False, spread_setter=_diagonal_spread),
    "SNES": _evosax(ea.SNES, False, spread_setter=_vector_spread),
    "Open_ES": _evosax(ea.Open_ES, False, lambda s, lr: {
        "std_schedule": optax.constant_schedule(s), "optimizer": optax.adam(lr)},
        std_param=False),
    "LM_MA_ES": _evosax(ea.LM_MA_ES, False, spread_setter=_isotropic_spread),
    "SimpleGA": _evosax(ea.SimpleGA, True, lambda s, lr: {
        "std_schedule": optax.constant_schedule(s)}, std_param=False),
    "DE": _evosax(ea.DifferentialEvolution, True, std_param=False),
    "PSO": _evosax(ea.PSO, True, std_param=False),
    "branching": _baseline(Branching),
    "rejection": _baseline(Rejection),
})


def check(name: str, space: spaces.Space, population_size: int) -> None:
    """Raises ValueError (one line) for settings a strategy cannot run with."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    if name == "CMA_ES" and space.name == "wplus":
        raise ValueError(f"CMA_ES is refused in wplus (d = {space.dim}: a d x d covariance "
                         "and its eigh every generation); use Sep_CMA_ES, SNES or LM_MA_ES")
    if population_size < 2:
        raise ValueError(f"population_size must be >= 2, got {population_size}")
    if name == "Open_ES" and population_size % 2:
        raise ValueError(f"Open_ES samples antithetic pairs: population_size must be even, "
                         f"got {population_size}")
    if name == "DE" and population_size < 4:
        raise ValueError(f"DE needs population_size >= 4, got {population_size}")


def build(name: str, space: spaces.Space, population_size: int, sigma: float = 0.5,
          learning_rate: float = 0.05):
    """The strategy ``name`` for ``space`` (validated first, see ``check``).

    Args:
      sigma: initial step size of the evosax algorithms, in prior units.
      learning_rate: Open_ES's Adam learning rate.
    """
    check(name, space, population_size)
    return STRATEGIES[name](space, population_size, sigma, learning_rate)
