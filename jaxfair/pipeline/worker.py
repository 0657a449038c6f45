"""Computing one step of work units: find, full-resolution render, variations, records.

``Worker`` holds what every step shares (models, finder, prior, compiled functions);
``Worker.step(units)`` returns one ``UnitOutput`` per unit, each a pure function of
(config, weights, unit id):

  find       the unit's identities (finders.py: the fused search or a fitted distribution);
  render     at full resolution, classified again (fixed batch, padded: one trace);
  variations K images per identity along the directions file (see variations.py), or the
             paper's moves (recipe.py), each re-classified and its group check recorded;
  crop       the written images optionally ArcFace-aligned (judge/crops.py) on the device,
             after the classifier has seen the full image.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from jaxfair import keys as keylib
from jaxfair.dataset.writer import UnitOutput
from jaxfair.judge import attributes, render, sizing
from jaxfair.pipeline import finders
from jaxfair.pipeline import recipe as recipe_lib
from jaxfair.pipeline import variations as var_lib
from jaxfair.pipeline.plan import Unit
from jaxfair.search import objective as obj


class Worker:
    """Shared state of every step of a run (models, finder, prior, compiled functions)."""

    def __init__(self, config: ml_collections.ConfigDict, G, C, groups: list[str],
                 finder: finders.Finder, directions: var_lib.Directions | None,
                 recipe: recipe_lib.Recipe | None = None, budget_bytes: int | None = None):
        """``budget_bytes``: memory budget of one render call; the render batch is then the
        largest of ``render_batch`` and the powers of two below it that fits
        (``sizing.size_step``, at the first render); None: ``render_batch``."""
        self.config, self.G, self.C = config, G, C
        self.finder = finder
        self.targets = [attributes.parse_target(g, C.schema) for g in groups]
        self.groups = groups
        self.prior = finder.prior
        self.objective = obj.Objective(threshold=config.threshold,
                                       mode=config.search.accept_mode)
        self.root = keylib.root(config.seed)
        self.directions = directions
        self.recipe = recipe
        self.budget_bytes = budget_bytes
        self.render_factory = render.render_factory(G, C, config.noise_mode,
                                                    config.get("crop", "none"))
        self._render = None

    # Render and records ---------------------------------------------------------------

    @property
    def render_step(self) -> sizing.Sized | None:
        """The render at its batch within the budget (None before the first render or
        without a budget)."""
        return self._render if isinstance(self._render, sizing.Sized) else None

    def render(self, ws: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """ws [N, num_ws, w_dim] -> (probabilities {attr: [N, K]}, uint8 images), batched."""
        configured = self.config.render_batch
        if self._render is None:
            self._render = (self.render_factory(configured)[0] if self.budget_bytes is None
                            else sizing.size_step(self.render_factory, self.budget_bytes,
                                                  configured, "render"))
        batch = self.render_step.batch if self.render_step is not None else configured
        return render.batched(lambda w: self._render(self.G.state, self.C.state, w),
                              np.asarray(ws, np.float32), batch)

    def step(self, units: list[Unit]) -> list[UnitOutput]:
        """Computes the outputs of a step of units (see module docstring); a unit the finder
        could not fill (None) has no output."""
        pairs = [(u, f) for u, f in zip(units, self.finder.find(units)) if f is not None]
        if not pairs:
            return []
        units, found = [u for u, _ in pairs], [f for _, f in pairs]
        ws = np.concatenate([f.ws for f in found])
        probs, imgs = self.render(ws)
        outputs, start = [], 0
        for unit, f in zip(units, found):
            rows = slice(start, start + len(f.ws))
            start += len(f.ws)
            out = self._unit_output(unit, f, {k: v[rows] for k, v in probs.items()},
                                    imgs[rows])
            out.stats.update(f.stats)
            outputs.append(out)
        return outputs

    def _unit_output(self, unit: Unit, found: finders.Found, probs, imgs) -> UnitOutput:
        target, ws = self.targets[unit.group], found.ws
        ok = np.asarray(obj.accepted(self.objective, probs, target))
        rows_ws, rows_img, rows_probs, ident, variation = [ws], [imgs], [probs], \
            [np.arange(len(ws))], [np.zeros(len(ws), int)]
        move, inside = [np.full(len(ws), -1)], [ok]
        rejected = missing = outside = tried = 0
        k = self.config.variations
        if self.recipe is not None:
            m = len(self.recipe)
            moved = np.asarray(recipe_lib.apply(self.recipe, ws), np.float32)
            moved = moved.reshape(len(ws) * m, *ws.shape[1:])
            v_probs, v_imgs = self.render(moved)
            tried = len(moved)
            v_ok = np.asarray(obj.accepted(self.objective, v_probs, target))
            keep = v_ok | bool(self.config.get("keep_outside_group", False))
            outside, rejected = int(np.sum(~v_ok)), int(np.sum(~keep))
            rows_ws.append(moved[keep])
            rows_img.append(v_imgs[keep])
            rows_probs.append({a: p[keep] for a, p in v_probs.items()})
            ident.append(np.repeat(np.arange(len(ws)), m)[keep])
            move.append(np.tile(np.arange(m), len(ws))[keep])
            variation.append(move[-1] + 1)  # variation v = move v - 1 (gaps where dropped)
            inside.append(v_ok[keep])
        elif k:
            v = var_lib.generate(self.directions, self.prior, ws, k,
                                 self.config.variation_tries,
                                 keylib.variations(self.root, unit.id),
                                 lambda w: self.render(w), target, self.objective)
            rows_ws.append(v.ws)
            rows_img.append(v.images)
            rows_probs.append(v.probs)
            ident.append(v.identity)
            variation.append(v.index)
            rejected, missing = v.rejected, v.missing
            tried = len(ws) * k * self.config.variation_tries
            move.append(np.full(len(v.ws), -1))
            inside.append(np.ones(len(v.ws), bool))  # generate() keeps only in-group faces
        ws_all = np.concatenate(rows_ws)
        imgs_all = np.concatenate(rows_img)
        probs_all = {a: np.concatenate([p[a] for p in rows_probs]) for a in probs}
        ident, variation = np.concatenate(ident), np.concatenate(variation)
        move, inside = np.concatenate(move), np.concatenate(inside)
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
                "unit": unit.id, "seed": self.config.seed,
                "search": int(found.search[ident[i]])})
            if self.recipe is not None:  # the move (None: the identity's own image)
                records[-1]["move"] = (self.recipe.moves[move[i]].as_dict() if move[i] >= 0
                                       else None)
                records[-1]["in_group"] = bool(inside[i])
        latent = ws_all[order] if self.finder.latent_space == "wplus" else ws_all[order][:, 0]
        z = found.z[ident[order]] if found.z is not None else None
        return UnitOutput(unit, records, np.asarray(latent, np.float32), imgs_all[order], z,
                          {"rendered": len(ws), "variation_candidates": tried,
                           "variations_rejected": rejected, "variations_missing": missing,
                           "variations_outside_group": outside,
                           "score_disagreements": int(np.sum(~ok))})

