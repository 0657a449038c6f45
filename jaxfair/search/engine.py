"""The fused search: S searches x P candidates per generation, T generations per call.

``Engine`` holds fixed settings only (model graphdefs, space, strategy, objective, sizes).
Its two compiled functions take everything that changes as arguments, so one trace serves
every chunk, target and set of weights of the same architecture:

  state = engine.init(g_state, c_state, prior, targets, keys)          # S searches
  state, metrics = engine.run(g_state, c_state, prior, targets, keys, state)  # T gens

Inside ``run`` one ``lax.scan`` step is a generation: ask (vmap over S) -> ws -> synthesis
(stopped at ``score_resolution``) -> classifier -> loss and acceptance -> archive insert
and tell (vmap over S). Generator and classifier run once on the flattened S*P batch; the
classifier pass returns the logits and the penultimate features together (the archive's
optional feature-space duplicate test). With ``dtype='bfloat16'`` synthesis and
classifier compute in bf16; candidates, probabilities, loss and archive stay float32.
``targets`` (masks [S, K]) and ``keys`` [S] give every search its own group and randomness;
the key of generation g of search s is ``fold_in(keys[s], g)``, so a chunk of T generations
equals T chunks of one. Metrics come back once per call ([T, S] arrays): the host loop never
round-trips inside a chunk.

Example:
  eng = Engine.create(G, C, space, strategy, Objective(), num_searches=8, generations=10)
  state = eng.init(G.state, C.state, prior, targets, keys)
  for chunk in range(20):
      state, m = eng.run(G.state, C.state, prior, targets, keys, state)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from jaxfair.judge import attributes, classifier, render, sizing
from jaxfair.judge import preprocess as pp
from jaxfair.models import stylegan2 as sg
from jaxfair.search import archive as arc
from jaxfair.search import objective as obj
from jaxfair.search import spaces


@flax.struct.dataclass
class SearchState:
    """Everything that changes in one search (a leading [S] axis for S searches).

    Attributes:
      strategy: the strategy's own state.
      archive: accepted, de-duplicated candidates.
      best_u: [D] lowest-loss candidate so far; best_loss: scalar.
      best_masses: [A] highest target probability seen per attribute (schema order, as
        the archive's masses).
      generation: int32 generations done (the initial prior batch is generation 0).
      evaluated, accepted: int32 candidates evaluated / accepted (duplicates included).
    """

    strategy: Any
    archive: arc.Archive
    best_u: jax.Array
    best_loss: jax.Array
    best_masses: jax.Array
    generation: jax.Array
    evaluated: jax.Array
    accepted: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Engine:
    """Fixed settings of a fused search (see module docstring).

    Attributes:
      g_graphdef, c_graphdef: model structures (weights are call arguments).
      preprocess, schema: the classifier's input spec and output schema.
      space: search space; strategy: built once (strategies.build).
      objective: loss and acceptance settings.
      num_searches: S; generations: T per ``run`` call.
      psi: truncation of the z space; noise_mode: 'const' or 'none' ('random' draws noise
        from the generation key).
      score_resolution: synthesis stops here (a block resolution); None = full.
      archive_capacity, duplicate_radius: per-search archive settings.
      feature_radius: > 0 also rejects candidates whose classifier features lie within
        this chord distance of a stored row (archive.feature_distance); 0 = off.
      dtype: compute dtype of synthesis and classifier while searching, 'float32' or
        'bfloat16' (``render``, the final full-resolution check, is always float32).
      eval_batch: score the S*P candidates of a generation in micro-batches of this many
        (``lax.map`` over the flattened batch; the last one zero-padded), 0 = all at once.
        On a CPU small micro-batches keep the feature maps in cache (measured 1.28x on
        the demo models with 4, README); on accelerators, and with searches sharded over
        several devices (micro-batches would cut across the shards), keep 0. The jobs
        lower it further where one ``run`` call would exceed the memory budget
        (``size_run``); it stays their upper bound.
    """

    g_graphdef: nnx.GraphDef
    c_graphdef: nnx.GraphDef
    preprocess: pp.Preprocess
    schema: attributes.Schema
    space: spaces.Space
    strategy: Any
    objective: obj.Objective
    num_searches: int
    generations: int
    psi: float = 1.0
    noise_mode: str = "const"
    score_resolution: int | None = None
    archive_capacity: int = 64
    duplicate_radius: float = 0.05
    feature_radius: float = 0.0
    dtype: str = "float32"
    eval_batch: int = 0

    @classmethod
    def create(cls, G: sg.Generator, C: classifier.Classifier, space: spaces.Space, strategy,
               objective: obj.Objective, **kw) -> Engine:
        res = kw.get("score_resolution")
        if res is not None and res not in G.config.block_resolutions:
            raise ValueError(f"score_resolution must be one of {G.config.block_resolutions} "
                             f"(or 0 for full), got {res}")
        if kw.get("feature_radius", 0.0) < 0:
            raise ValueError(f"feature_radius must be >= 0, got {kw['feature_radius']}")
        dtype = kw.get("dtype", "float32")
        if dtype not in classifier.COMPUTE_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(classifier.COMPUTE_DTYPES)}, "
                             f"got {dtype!r}")
        if kw.get("eval_batch", 0) < 0:
            raise ValueError(f"eval_batch must be >= 0 (0: whole batch), got "
                             f"{kw['eval_batch']}")
        if dtype != "float32" and C.kind != "resnet":
            raise ValueError(f"dtype {dtype!r} is implemented for ResNet classifiers only, "
                             f"not {C.kind!r}")
        return cls(G.graphdef, C.graphdef, C.preprocess, C.schema, space, strategy, objective,
                   **kw)

    @property
    def population_size(self) -> int:
        return self.strategy.population_size

    @property
    def batch(self) -> int:
        """Candidates scored per generation: S * P."""
        return self.num_searches * self.population_size

    @property
    def eval_bound(self) -> int:
        """The largest micro-batch this engine may score: ``eval_batch`` (0: the whole
        S * P batch), at most S * P (the upper bound of its memory sizing)."""
        return min(self.eval_batch or self.batch, self.batch)

    # Pieces (pure) --------------------------------------------------------------------

    def score(self, g_state, c_state, prior, u, key):
        """What one search step computes per candidate (score resolution, search dtype).

        Returns:
          ({attr: probs [N, K]}, features [N, F], images [N, r, r, 3]) for u [N, D], from
          one synthesis and one classifier pass; everything float32.
        """
        return self._score(g_state, c_state, prior, u, key, self.score_resolution,
                           self.dtype)

    def _score(self, g_state, c_state, prior, u, key, resolution, dtype):
        ws = spaces.to_ws(self.space, self.g_graphdef, g_state, prior, u, self.psi)
        img, probs, feats = render.judge(self.g_graphdef, g_state, self.c_graphdef, c_state,
                                         self.preprocess, self.schema, ws, self.noise_mode,
                                         key, resolution, dtype, features=True)
        return probs, feats, img

    def _score_batched(self, g_state, c_state, prior, u, key):
        """``score`` of u [N, D] without the images, in micro-batches of ``eval_batch``."""
        n, d = u.shape
        b = self.eval_batch
        if not b or b >= n:
            probs, feats, _ = self.score(g_state, c_state, prior, u, key)
            return probs, feats
        m = -(-n // b)
        x = jnp.pad(u, ((0, m * b - n), (0, 0))).reshape(m, b, d)  # zero rows: sliced off
        keys = jax.vmap(functools.partial(jax.random.fold_in, key))(jnp.arange(m))

        def one(args):
            probs, feats, _ = self.score(g_state, c_state, prior, *args)
            return probs, (feats if self.feature_radius > 0 else feats[:, :0])
        probs, feats = jax.lax.map(one, (x, keys))
        return jax.tree.map(lambda v: v.reshape(m * b, *v.shape[2:])[:n], (probs, feats))

    def _evaluate(self, g_state, c_state, prior, targets, u, key, archive):
        """u [S, P, D] -> (loss, ok [S, P], masses [S, P, A], features [S, P, F]) in one
        batched model call (features: [S, P, 0] when the feature test is off)."""
        s, p, d = u.shape
        probs, feats = self._score_batched(g_state, c_state, prior, u.reshape(s * p, d), key)
        probs = {k: v.reshape(s, p, -1) for k, v in probs.items()}
        # Without the feature test XLA drops the unused features (nothing is computed
        # twice: the logits are a head on the same pooled features).
        feats = feats.reshape(s, p, -1) if self.feature_radius > 0 else \
            jnp.zeros((s, p, 0), jnp.float32)
        masses = jax.vmap(functools.partial(obj.target_masses, names=self.schema.names))(
            probs, targets)
        ok = jax.vmap(functools.partial(obj.accepted, self.objective))(probs, targets)
        loss = obj.classifier_loss(masses)
        if self.objective.prior_weight:
            loss = loss + self.objective.prior_weight * spaces.prior_loss(self.space, u)
        if self.objective.novelty_weight and archive is not None:
            near = jax.vmap(functools.partial(arc.nearest_distance, space=self.space))(
                archive, u=u)
            loss = loss + self.objective.novelty_weight * obj.novelty_loss(
                near, self.objective.novelty_radius)
        return loss, ok, masses, feats

    def _record(self, state: SearchState, u, loss, ok, masses, feats) -> SearchState:
        """Archive and best-so-far bookkeeping after one evaluated generation (vmapped)."""
        def one(st, u, loss, ok, masses, feats):
            a = arc.insert(st.archive, self.space, u, ok, masses, loss, st.generation,
                           self.duplicate_radius, feats, self.feature_radius)
            i = jnp.argmin(loss)
            better = loss[i] < st.best_loss
            return st.replace(
                archive=a, best_u=jnp.where(better, u[i], st.best_u),
                best_loss=jnp.minimum(st.best_loss, loss[i]),
                best_masses=jnp.maximum(st.best_masses, jnp.max(masses, axis=0)),
                generation=st.generation + 1, evaluated=st.evaluated + u.shape[0],
                accepted=st.accepted + jnp.sum(ok, dtype=jnp.int32))
        return jax.vmap(one)(state, u, loss, ok, masses, feats)

    def _keys(self, keys, generation):
        """Per-search generation keys -> (prior, ask, tell, noise) keys, each [S]."""
        k = jax.vmap(jax.random.fold_in)(keys, generation)
        return tuple(jnp.moveaxis(jax.vmap(lambda x: jax.random.split(x, 4))(k), 1, 0))

    def _prior(self, g_state, prior, keys):
        """Fresh prior samples for every search [S, P, D]."""
        return jax.vmap(lambda k: spaces.sample(self.space, self.g_graphdef, g_state, prior, k,
                                                self.population_size, self.psi))(keys)

    # Compiled entry points --------------------------------------------------------------

    @functools.partial(jax.jit, static_argnums=0)
    def init(self, g_state, c_state, prior, targets, keys, u0=None, spread=None
             ) -> SearchState:
        """Evaluates one initial batch per search and starts the strategies and archives.

        ``u0`` [S, P, D] (search coordinates) replaces the prior batch, e.g. samples from a
        group's fitted distribution so that every search starts inside its group.
        ``spread`` [S, D] replaces ``sigma_init`` by a per-dimension spread per search
        (strategies with ``adapts_spread``; ValueError otherwise).
        """
        if spread is not None and not self.strategy.adapts_spread:
            raise ValueError(f"strategy {self.strategy.name} has no adaptable spread; use "
                             "Sep_CMA_ES, CMA_ES, SNES or LM_MA_ES")
        s, a = self.num_searches, len(self.schema.attributes)
        params = self.strategy.make_params(prior)
        k_prior, k_init, _, k_noise = self._keys(keys, jnp.zeros((s,), jnp.int32))
        u = self._prior(g_state, prior, k_prior) if u0 is None else u0
        loss, ok, masses, feats = self._evaluate(g_state, c_state, prior, targets, u,
                                                 k_noise[0], None)
        strat = jax.vmap(self.strategy.init, in_axes=(0, 0, 0, 0, None))(
            k_init, u, loss, ok, params)
        if spread is not None:
            strat = jax.vmap(self.strategy.with_spread)(strat, spread)
        empty = jax.vmap(lambda _: arc.empty(self.archive_capacity, self.space.dim, a,
                                             feats.shape[-1]))(jnp.arange(s))
        zero = jnp.zeros((s,), jnp.int32)
        state = SearchState(strategy=strat, archive=empty, best_u=u[:, 0],
                            best_loss=jnp.full((s,), jnp.inf), best_masses=jnp.zeros((s, a)),
                            generation=zero, evaluated=zero, accepted=zero)
        return _strong(self._record(state, u, loss, ok, masses, feats))

    def step(self, g_state, c_state, prior, targets, keys, state: SearchState
             ) -> tuple[SearchState, dict[str, jax.Array]]:
        """One generation for every search (pure; ``run`` scans it)."""
        params = self.strategy.make_params(prior)
        k_prior, k_ask, k_tell, k_noise = self._keys(keys, state.generation)
        prior_u = self._prior(g_state, prior, k_prior)
        u, strat = jax.vmap(self.strategy.ask, in_axes=(0, 0, 0, None))(
            k_ask, state.strategy, prior_u, params)
        loss, ok, masses, feats = self._evaluate(g_state, c_state, prior, targets, u,
                                                 k_noise[0], state.archive)
        strat = jax.vmap(self.strategy.tell, in_axes=(0, 0, 0, 0, 0, None))(
            k_tell, u, loss, ok, strat, params)
        state = self._record(state.replace(strategy=strat), u, loss, ok, masses, feats)
        metrics = {"accepted": jnp.sum(ok, axis=-1, dtype=jnp.int32),
                   "best_loss": jnp.min(loss, axis=-1),
                   "archived": state.archive.count}
        return state, metrics

    @functools.partial(jax.jit, static_argnums=0)
    def run(self, g_state, c_state, prior, targets, keys, state: SearchState
            ) -> tuple[SearchState, dict[str, jax.Array]]:
        """``generations`` steps in one ``lax.scan``; metrics stacked [T, S]."""
        def body(st, _):
            st, metrics = self.step(g_state, c_state, prior, targets, keys, st)
            return _strong(st), metrics
        return jax.lax.scan(body, state, None, length=self.generations)

    @functools.partial(jax.jit, static_argnums=0)
    def render(self, g_state, c_state, prior, u) -> tuple[dict[str, jax.Array], jax.Array]:
        """Probabilities and full-resolution images [N, R, R, 3] of u [N, D], in float32
        whatever the search dtype (these are the images a job writes)."""
        probs, _, img = self._score(g_state, c_state, prior, u, None, None, "float32")
        return probs, img


def _strong(state: SearchState) -> SearchState:
    """``state`` with strong dtypes. evosax counters start as Python ints, and some
    strategies' ``tell`` (Open_ES, SimpleGA) returns a weakly typed ``std``: without this, the
    state ``run`` returns would not have the avals it was given, and every job's second chunk
    would compile ``run`` again."""
    return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), state)


@dataclasses.dataclass(frozen=True)
class RunStep:
    """``engine.run`` as a step that ``jaxfair.judge.sizing`` compiles (``lower``) and calls:
    ``(g_state, c_state, prior, targets, keys, state) -> (state, metrics)``."""

    engine: Engine

    def lower(self, *args):
        return Engine.run.lower(self.engine, *args)

    def __call__(self, *args):
        return self.engine.run(*args)


def run_factory(engine: Engine, g_state, c_state, prior, targets, keys):
    """``batch -> (RunStep of engine at micro-batch batch, abstract arguments of one run
    call)``: the search's evaluate step for ``sizing.size_step`` (``--dry_run`` and the run
    size it with this one factory; see ``size_run``).

    A batch >= ``engine.eval_bound`` is ``engine`` itself (the same object and program);
    a smaller one a copy with ``eval_batch=b``. Arguments may be arrays or
    ``jax.ShapeDtypeStruct``s (targets [S, K] masks and keys [S] of one step); nothing is
    computed (the state's shape comes from ``jax.eval_shape`` of ``init``).
    """
    args = sizing.abstract((g_state, c_state, prior, targets, keys))

    def factory(b: int):
        eng = engine if b >= engine.eval_bound else dataclasses.replace(engine, eval_batch=b)
        return RunStep(eng), (*args, jax.eval_shape(eng.init, *args))

    return factory


def size_run(engine: Engine, budget_bytes: int, g_state, c_state, prior, targets, keys
             ) -> sizing.Sized:
    """The engine's ``run`` at the largest micro-batch within ``budget_bytes`` per call, among
    ``eval_bound`` and the powers of two below it (``sizing.size_step``, step 'evaluate').

    The executable compiled while sizing is the one that runs (``Sized.__call__``);
    ``sized.jitted.engine`` is the engine at that micro-batch, the one to ``init`` with
    (its initial batch is the same evaluation). When ``eval_bound`` fits, that engine is
    ``engine``: the run computes exactly what it computed without a budget.

    Raises:
      sizing.BudgetError: not even a micro-batch of 1 fits.
    """
    return sizing.size_step(run_factory(engine, g_state, c_state, prior, targets, keys),
                            budget_bytes, engine.eval_bound, "evaluate")


def place(num_searches: int, shared, devices=None):
    """Where a run's searches go: ``(mesh, shared)``. With several ``devices`` (default: all),
    a 'search' mesh over them and ``shared`` (weights, prior) replicated on it; with one,
    ``(None, shared)`` unchanged. Shard per-search arrays with ``shard(tree, mesh)``."""
    devices = jax.devices() if devices is None else devices
    if len(devices) < 2:
        return None, shared
    mesh = search_mesh(num_searches, devices)
    return mesh, replicate(shared, mesh)


def shard(tree, mesh: jax.sharding.Mesh | None, axis: str = "search"):
    """Places every leaf's leading (search) axis over ``mesh``'s ``axis`` (None: as is)."""
    if mesh is None:
        return tree
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))
    return jax.device_put(tree, spec)


def replicate(tree, mesh: jax.sharding.Mesh):
    """Places a copy of every leaf on every device of ``mesh`` (model weights, prior)."""
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def search_mesh(num_searches: int, devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh named 'search' over every device; S must divide evenly."""
    devices = jax.devices() if devices is None else devices
    if num_searches % len(devices):
        raise ValueError(f"num_searches ({num_searches}) must be a multiple of the number of "
                         f"devices ({len(devices)})")
    return jax.sharding.Mesh(devices, ("search",))
