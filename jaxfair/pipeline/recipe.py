r"""The paper's variation recipe: 45 moves of each identity along latent directions.

Jain et al. made every identity's 45 images with youneednodataset's ``generate_w_forone``,
moving its w along Colbois et al.'s (IJCB 2021) directions, read from their
``latent_directions.pkl``:

  expression e (5 of them):  w' = w - (w . n_e) n_e + 0.75 * pos_mean_e * n_e
  pose (20):                 w' = w + s n_p,  s in 0.75 * linspace(-x_p, x_p, 20)
  illumination (20):         w' = w + s n_i,  s in 1.25 * linspace(-x_i, x_i, 20)

with ``x = max(-neg_mean, pos_mean)`` and every n a unit row in W. In W+ the same move is
applied to every layer's row (the original broadcasts w to all layers first).

All of these are one affine form, so a recipe is three arrays and one pure function:

  w'_m = w - keep_m (w . n_m) n_m + shift_m n_m       (keep_m = 1 for expressions, else 0)

The file (a plain pickle, read by ``jaxfair.convert.plain_pickle``, never ``pickle``):
``{'expression': {('neutral', 'smile'): {'normal': [1, w_dim], 'pos_stats': {'mean': x},
'neg_stats': {'mean': x}}, ...}, 'pose': {...}, 'illumination': {...}}`` (the last two
hold the same three keys as one expression). Expressions keep the file's order.

jaxfair's own ``.npz`` directions (``variations.Directions``) serve as sweeps too: each
direction m gives ``steps`` moves ``w + s n_m``, s in ``scale_m * L * linspace(-1, 1, steps)``
(L = w_std sqrt(w_dim), the unit of ``variations``).

Example:
  r = load("latent_directions.pkl", w_dim=512)
  moved = apply(r, ws)                 # ws [N, w_dim] -> [N, 45, w_dim]
  r.moves[7]                           # Move(kind='pose', name='pose', step=2, scale=...)
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair.convert.guard import CheckpointError
from jaxfair.convert.plain_pickle import load_plain_pickle
from jaxfair.pipeline import variations

EXPRESSION_SCALE = 0.75
POSE_SCALE = 0.75
ILLUMINATION_SCALE = 1.25
SWEEP_STEPS = 20
KINDS = ("expression", "pose", "illumination")
_UNIT_TOLERANCE = 1e-3  # normals are unit rows; float32 files round at ~1e-7


class DirectionsError(ValueError):
    """A directions file that cannot serve the recipe (the message is one line)."""


@dataclasses.dataclass(frozen=True)
class Move:
    """One variation: kind ('expression', 'pose', 'illumination' or an .npz direction
    name), name (the expression, or the kind), step (index within the kind) and scale
    (expression: the projection w' gets; sweeps: the shift along the normal)."""

    kind: str
    name: str
    step: int
    scale: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """M moves as arrays: normals [M, w_dim] (unit rows), keep [M] (1: replace w's
    component along the normal), shift [M]; ``moves`` describes each row."""

    normals: np.ndarray
    keep: np.ndarray
    shift: np.ndarray
    moves: tuple[Move, ...]

    @property
    def w_dim(self) -> int:
        return self.normals.shape[1]

    def __len__(self) -> int:
        return len(self.moves)

    def table(self) -> list[dict]:
        """The moves as JSON-ready dicts, row m = move m."""
        return [m.as_dict() for m in self.moves]


def apply_moves(ws: jax.Array, normals: jax.Array, keep: jax.Array, shift: jax.Array
                ) -> jax.Array:
    """Every move of every latent.

    Args:
      ws: [N, w_dim] or [N, num_ws, w_dim] (every layer row moves alike).
      normals: [M, w_dim] unit rows; keep: [M] in {0, 1}; shift: [M].

    Returns:
      [N, M, w_dim] or [N, M, num_ws, w_dim], in ws's dtype.
    """
    ws = jnp.asarray(ws)
    normals = jnp.asarray(normals, ws.dtype)
    proj = jnp.einsum("n...d,md->nm...", ws, normals)  # [N, M, (num_ws)]
    extra = (None,) * (ws.ndim - 2)
    coef = shift.astype(ws.dtype)[(None, slice(None)) + extra] - \
        keep.astype(ws.dtype)[(None, slice(None)) + extra] * proj
    n_b = normals[(None, slice(None)) + extra]  # [1, M, (1), w_dim]
    return ws[:, None] + coef[..., None] * n_b


def apply(recipe: Recipe, ws: jax.Array) -> jax.Array:
    """``apply_moves`` with the recipe's arrays: ws [N, (num_ws,) w_dim] -> [N, M, ...]."""
    return apply_moves(ws, jnp.asarray(recipe.normals), jnp.asarray(recipe.keep),
                       jnp.asarray(recipe.shift))


def _sweep(kind: str, normal: np.ndarray, pos_mean: float, neg_mean: float, scale: float,
           steps: int) -> tuple[list, list, list]:
    extent = max(-neg_mean, pos_mean)
    shifts = scale * np.linspace(-extent, extent, steps)
    return ([normal] * steps, [0.0] * steps,
            [Move(kind, kind, i, float(s)) for i, s in enumerate(shifts)])


def from_paper(data: object, w_dim: int, source: str) -> Recipe:
    """The recipe of a ``latent_directions.pkl`` dict (see module docstring).

    Raises:
      DirectionsError: a missing key, a normal of another w_dim or not unit length, a
        non-scalar or non-finite mean (the message names ``source``).
    """
    def bad(msg):
        return DirectionsError(f"directions file {source}: {msg}")

    def analysis(obj, where):
        if not isinstance(obj, dict):
            raise bad(f"{where} must be a dict with normal, pos_stats, neg_stats")
        missing = [k for k in ("normal", "pos_stats", "neg_stats") if k not in obj]
        if missing:
            raise bad(f"{where} lacks {', '.join(missing)}")
        n = np.asarray(obj["normal"], np.float64) if isinstance(
            obj["normal"], (np.ndarray, list, tuple)) else None
        if n is None or n.dtype.kind not in "fiu" or n.size != n.shape[-1] or n.ndim > 2:
            raise bad(f"{where}.normal must be a numeric [1, w_dim] array")
        if n.size != w_dim:
            raise bad(f"{where}.normal has w_dim {n.size}, the generator's w_dim is {w_dim}")
        n = n.reshape(w_dim)
        if not np.all(np.isfinite(n)) or abs(np.linalg.norm(n) - 1) > _UNIT_TOLERANCE:
            raise bad(f"{where}.normal must be a finite unit vector (norm "
                      f"{np.linalg.norm(n):.4g})")
        means = []
        for stats in ("pos_stats", "neg_stats"):
            s = obj[stats]
            m = s.get("mean") if isinstance(s, dict) else None
            m = np.asarray(m) if isinstance(m, (int, float, np.number, np.ndarray)) else None
            if m is None or m.size != 1 or m.dtype.kind not in "fiu" or not np.isfinite(m):
                raise bad(f"{where}.{stats}.mean must be a finite number")
            means.append(float(m.reshape(())))
        return n, means[0], means[1]

    if not isinstance(data, dict):
        raise bad("expected a dict with expression, pose, illumination")
    missing = [k for k in KINDS if k not in data]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    expressions = data["expression"]
    if not isinstance(expressions, dict) or not expressions:
        raise bad("expression must be a non-empty dict of {(neutral, name): analysis}")
    normals, keep, moves = [], [], []
    shift = []
    for i, (key, obj) in enumerate(expressions.items()):
        name = key[-1] if isinstance(key, tuple) and key else key
        if not isinstance(name, str):
            raise bad(f"expression key {key!r:.40} must be a tuple of names")
        n, pos, _ = analysis(obj, f"expression[{key!r}]")
        normals.append(n)
        keep.append(1.0)
        shift.append(EXPRESSION_SCALE * pos)
        moves.append(Move("expression", name, i, EXPRESSION_SCALE * pos))
    for kind, scale in (("pose", POSE_SCALE), ("illumination", ILLUMINATION_SCALE)):
        n, pos, neg = analysis(data[kind], kind)
        ns, ks, ms = _sweep(kind, n, pos, neg, scale, SWEEP_STEPS)
        normals += ns
        keep += ks
        shift += [m.scale for m in ms]
        moves += ms
    return Recipe(np.asarray(normals, np.float32), np.asarray(keep, np.float32),
                  np.asarray(shift, np.float32), tuple(moves))


def from_directions(d: variations.Directions, length: float, steps: int = SWEEP_STEPS
                    ) -> Recipe:
    """Sweeps along jaxfair ``.npz`` directions: ``steps`` moves per direction.

    Args:
      length: L = w_std * sqrt(w_dim) of the generator's prior (the directions' unit).
    """
    if steps < 2:
        raise DirectionsError(f"sweeps need at least 2 steps, got {steps}")
    normals, moves = [], []
    for name, v, s in zip(d.names, d.vectors, d.scales):
        for i, x in enumerate(float(s) * length * np.linspace(-1.0, 1.0, steps)):
            normals.append(v)
            moves.append(Move(name, name, i, x))
    m = len(moves)
    return Recipe(np.asarray(normals, np.float32), np.zeros(m, np.float32),
                  np.asarray([mv.scale for mv in moves], np.float32), tuple(moves))


def load(path: str, w_dim: int, length: float, steps: int = SWEEP_STEPS) -> Recipe:
    """A recipe from either file format: a Colbois pickle, or jaxfair ``.npz`` directions.

    Args:
      path: the file. w_dim: the generator's. length: the prior's L (``.npz`` sweeps only).

    Raises:
      DirectionsError: unreadable, refused by the restricted reader, or invalid (one line
        naming ``path``).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise DirectionsError(f"directions file {path}: cannot read ({e.strerror})") from None
    if head.startswith(b"PK"):  # .npz is a zip archive
        try:
            return from_directions(variations.load(path, w_dim), length, steps)
        except DirectionsError:
            raise
        except ValueError as e:
            raise DirectionsError(str(e)) from None
    try:
        data = load_plain_pickle(path)
    except CheckpointError as e:
        raise DirectionsError(f"directions file {path}: {e}") from None
    return from_paper(data, w_dim, path)


def save_paper(path: str, expression: dict, pose: dict, illumination: dict) -> None:
    """Writes the pickle layout (for the demo file): each analysis is ``{'normal': [1,
    w_dim] float32, 'pos_stats': {'mean': float, ...}, 'neg_stats': {...}}``. Atomic."""
    import pickle  # writing our own data is safe; reading always goes through load()

    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump({"expression": expression, "pose": pose, "illumination": illumination},
                    f, protocol=4)
    os.replace(tmp, path)
