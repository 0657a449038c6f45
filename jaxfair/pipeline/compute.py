"""Computing one step of work units: search, full-resolution render, variations, records.

``Worker`` holds what every step shares (models, engine, prior, targets, compiled
functions); ``Worker.step(units)`` returns one ``UnitOutput`` per unit, each a pure function
of (config, weights, unit id):

  search     ``units_per_step x searches_per_unit`` fused searches (``Engine.run`` chunks),
             every unit's searches for its own group with keys ``fold_in(units_root, id)``;
             a short step is padded with copies of its last unit so that every step has the
             same shape (one trace). A unit takes its first ``size`` distinct accepted
             latents in (generation, search, slot) order: the archives only append, so
             running more generations than a unit needed never changes what it takes.
  render     accepted latents at full resolution, classified again (fixed batch, padded);
  variations K images per identity along the directions file (see variations.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxfair import attributes
from jaxfair import images as imlib
from jaxfair.classifier import predict as classifier_predict
from jaxfair.models import stylegan2 as sg
from jaxfair.pipeline import variations as var_lib
from jaxfair.pipeline.plan import Unit
from jaxfair.search import engine as eng_lib
from jaxfair.search import job, spaces
from jaxfair.search import objective as obj

# fold_in data of the independent key streams under the run's root key.
PRIOR_STREAM, UNITS_STREAM, VARIATIONS_STREAM = 0, 1, 2


class TargetNotReached(RuntimeError):
    """A unit's searches hit max_generations before finding its quota."""


@dataclasses.dataclass
class UnitOutput:
    """Everything a unit writes (host arrays), rows in record order.

    Attributes:
      unit: the unit.
      records: one dict per image (see writer.py for the fields).
      latents: [n, w_dim] or [n, num_ws, w_dim] float32.
      images: [n, H, W, 3] uint8.
      z: [n, z_dim] the identity's z per row (space z only) or None.
      stats: counts (candidates, generations, variations_rejected, score_disagreements).
    """

    unit: Unit
    records: list[dict]
    latents: np.ndarray
    images: np.ndarray
    z: np.ndarray | None
    stats: dict[str, int]


def step_engine(config: ml_collections.ConfigDict, G, C) -> eng_lib.Engine:
    """The search engine of a pipeline step: S = units_per_step x searches_per_unit."""
    sc = ml_collections.ConfigDict(config.to_dict())
    sc.search.num_searches = config.units_per_step * config.searches_per_unit
    sc.search.threshold = config.threshold  # the dataset's acceptance rule
    return job.build_engine(sc, G, C)


class Worker:
    """Shared state of every step of a run (models, engine, prior, compiled functions)."""

    def __init__(self, config: ml_collections.ConfigDict, G, C, groups: list[str],
                 directions: var_lib.Directions | None, log: Callable[[str], None]):
        self.config, self.G, self.C, self.log = config, G, C, log
        self.engine = step_engine(config, G, C)
        self.targets = [attributes.parse_target(g, C.schema) for g in groups]
        self.groups = groups
        root = jax.random.key(config.seed)
        self.prior = spaces.estimate_prior(G, jax.random.fold_in(root, PRIOR_STREAM))
        self.units_root = jax.random.fold_in(root, UNITS_STREAM)
        self.var_root = jax.random.fold_in(root, VARIATIONS_STREAM)
        self.directions = directions
        self.g_state, self.c_state, prior = G.state, C.state, self.prior
        self.mesh = None
        if len(jax.local_devices()) > 1:
            self.mesh = eng_lib.search_mesh(self.engine.num_searches, jax.local_devices())
            self.g_state, self.c_state, prior = eng_lib.replicate(
                (self.g_state, self.c_state, prior), self.mesh)
        self.prior_dev = prior
        self._render = _render_fn(G, C, config.noise_mode)

    # Search ---------------------------------------------------------------------------

    def _search(self, units: list[Unit]
                ) -> tuple[list[np.ndarray], list[np.ndarray], list[dict]]:
        """Runs the step's searches; per unit u [size, D], search index [size], stats."""
        cfg, eng = self.config, self.engine
        spu = cfg.searches_per_unit
        slots = units + [units[-1]] * (cfg.units_per_step - len(units))
        targets = attributes.stack_targets([self.targets[u.group] for u in slots
                                            for _ in range(spu)])
        keys = jnp.concatenate([jax.random.split(jax.random.fold_in(self.units_root, u.id),
                                                 spu) for u in slots])
        if self.mesh is not None:
            targets, keys = eng_lib.shard((targets, keys), self.mesh)
        args = (self.g_state, self.c_state, self.prior_dev, targets, keys)
        state = eng.init(*args)
        gens = 1
        while True:
            taken = [self._take(state, j, u) for j, u in enumerate(units)]
            if all(len(t[0]) == u.size for t, u in zip(taken, units)):
                break
            if gens >= cfg.search.max_generations:
                raise TargetNotReached(self._short_report(state, units, taken))
            state, _ = eng.run(*args, state)
            gens += eng.generations
        evaluated = np.asarray(jax.device_get(state.evaluated))
        stats = [{"candidates": int(evaluated[j * spu:(j + 1) * spu].sum()),
                  "generations": gens} for j in range(len(units))]
        return [t[0] for t in taken], [t[1] for t in taken], stats

    def _take(self, state, j: int, unit: Unit) -> tuple[np.ndarray, np.ndarray]:
        spu = self.config.searches_per_unit
        sub = jax.tree.map(lambda x: x[j * spu:(j + 1) * spu], state)
        u, search, _, _ = job.collect(sub, self.engine.space, self.config.search.duplicate_radius,
                                      unit.size)
        return u, search

    def _short_report(self, state, units, taken) -> str:
        spu = self.config.searches_per_unit
        best = np.asarray(jax.device_get(state.best_masses))
        parts = []
        for j, (u, t) in enumerate(zip(units, taken)):
            if len(t[0]) < u.size:
                b = best[j * spu:(j + 1) * spu].max(axis=0)
                probs = ", ".join(f"{a.name} {p:.3f}" for a, p in
                                  zip(self.C.schema.attributes, b))
                parts.append(f"unit {u.id} ({self.groups[u.group]}): {len(t[0])}/{u.size} "
                             f"accepted, best target probability {probs}")
        return (f"search.max_generations ({self.config.search.max_generations}) reached; "
                + "; ".join(parts))

    # Render and records ---------------------------------------------------------------

    def render(self, ws: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """ws [N, num_ws, w_dim] -> (probabilities {attr: [N, K]}, uint8 images), batched."""
        b = self.config.render_batch
        probs, imgs = [], []
        for i in range(0, len(ws), b):
            chunk = ws[i:i + b]
            pad = np.zeros((b - len(chunk), *ws.shape[1:]), np.float32)
            p, im = self._render(self.G.state, self.C.state, np.concatenate([chunk, pad]))
            p, im = jax.device_get((p, im))
            probs.append({k: v[:len(chunk)] for k, v in p.items()})
            imgs.append(im[:len(chunk)])
        return ({k: np.concatenate([p[k] for p in probs]) for k in probs[0]},
                np.concatenate(imgs))

    def step(self, units: list[Unit]) -> list[UnitOutput]:
        """Computes the outputs of a step of units (see module docstring)."""
        space = self.engine.space
        us, searches, stats = self._search(units)
        sizes = [len(u) for u in us]
        u_all = np.concatenate(us)
        ws = np.asarray(spaces.to_ws(space, self.G.graphdef, self.G.state, self.prior,
                                     jnp.asarray(u_all), self.config.truncation_psi))
        probs, imgs = self.render(ws)
        outputs, start = [], 0
        for unit, n, search, st in zip(units, sizes, searches, stats):
            rows = slice(start, start + n)
            start += n
            out = self._unit_output(unit, u_all[rows], ws[rows], search,
                                    {k: v[rows] for k, v in probs.items()}, imgs[rows])
            out.stats.update(st)
            outputs.append(out)
        return outputs

    def _unit_output(self, unit: Unit, u, ws, search, probs, imgs) -> UnitOutput:
        target = self.targets[unit.group]
        ok = np.asarray(obj.accepted(self.engine.objective, probs, target))
        rows_ws, rows_img, rows_probs, ident, variation = [ws], [imgs], [probs], \
            [np.arange(len(ws))], [np.zeros(len(ws), int)]
        rejected = missing = 0
        k = self.config.variations
        if k:
            v = var_lib.generate(self.directions, self.prior, ws, k,
                                 self.config.variation_tries,
                                 jax.random.fold_in(self.var_root, unit.id),
                                 lambda w: self.render(w), target, self.engine.objective)
            rows_ws.append(v.ws)
            rows_img.append(v.images)
            rows_probs.append(v.probs)
            ident.append(v.identity)
            variation.append(v.index)
            rejected, missing = v.rejected, v.missing
        ws_all = np.concatenate(rows_ws)
        imgs_all = np.concatenate(rows_img)
        probs_all = {a: np.concatenate([p[a] for p in rows_probs]) for a in probs}
        ident, variation = np.concatenate(ident), np.concatenate(variation)
        order = np.lexsort((variation, ident))  # identity-major: i000-v00, i000-v01, ...
        masses = np.asarray(obj.target_masses(probs_all, target, self.C.schema.names))
        constrained = [a.name for a in self.C.schema.attributes
                       if not np.asarray(target.masks[a.name]).all()]
        records = []
        for row, i in enumerate(order):
            rid = f"u{unit.id:05d}-i{ident[i]:03d}-v{variation[i]:02d}"
            records.append({
                "id": rid, "identity": f"u{unit.id:05d}-i{ident[i]:03d}",
                "group": self.groups[unit.group], "variation": int(variation[i]),
                "file": None, "latent_row": row,
                "attributes": {a.name: {
                    "class": a.classes[int(np.argmax(probs_all[a.name][i]))],
                    "prob": round(float(np.max(probs_all[a.name][i])), 5)}
                    for a in self.C.schema.attributes},
                "target_probs": {name: round(float(masses[i, self.C.schema.names.index(name)]),
                                             5) for name in constrained},
                "unit": unit.id, "seed": self.config.seed, "search": int(search[ident[i]])})
        latent = ws_all[order] if self.engine.space.name == "wplus" else ws_all[order][:, 0]
        z = u[ident[order]] if self.engine.space.name == "z" else None
        return UnitOutput(unit, records, np.asarray(latent, np.float32), imgs_all[order], z,
                          {"variations_rejected": rejected, "variations_missing": missing,
                           "score_disagreements": int(np.sum(~ok))})


def _render_fn(G, C, noise_mode: str):
    @jax.jit
    def render(g_state, c_state, ws):
        img = sg.synthesis(G.graphdef, g_state, ws, noise_mode, None, None)
        return (classifier_predict(C.graphdef, c_state, img, C.preprocess, C.schema),
                imlib.to_uint8(img))
    return render
