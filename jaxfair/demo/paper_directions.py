r"""The demo world's latent_directions.pkl, in Colbois et al.'s layout, for the paper recipe.

  python -m jaxfair.demo.paper_directions --out=checkpoints/demo/latent_directions.pkl

Colbois et al. fitted their directions on Multi-PIE faces projected into W: for each
covariate a linear boundary between two sets of latents (neutral vs an expression, left vs
right pose, left vs right light), its unit normal n, and the mean projection ``w . n`` of
each side (``pos_stats`` / ``neg_stats``). The demo world has no photographs but exact
factors for every z (``fit_generator.factors_from_latent``), so the same recipe is applied
to prior draws labelled by their factors:

  expression ('neutral', X): the factor's top 20 % (positive) vs its middle 40-60 % (neutral)
    smile -> smile, surprise -> eye_size, squint -> eye_size (bottom 20 %),
    disgust -> brow_angle, scream -> mouth_width
  pose:          rotation, top 30 % vs bottom 30 %
  illumination:  bg_lightness (the scene's brightness), top 30 % vs bottom 30 %

Each boundary is a logistic regression in W (``variations.fit_direction``; Colbois used a
linear SVM, the normal is what matters). The recipe measures w along n from W's origin (an
expression move cancels ``w . n`` and sets it to 0.75 pos_mean; a sweep spans
``max(-neg_mean, pos_mean)``), so it presumes every boundary passes through the origin. In
the demo W the average face lies far from the origin (|w_avg| = 10.6, w_std 0.74), so each
fitted normal has its component along w_avg removed (a tilt of 0.5-2.5 degrees for the
expressions, 13-14 for pose and illumination): then ``w_avg . n = 0``, the average face is
the neutral point, and the stored ``mean`` of ``w . n`` over each side (``std`` its spread)
is measured from it. Without this the pose sweep would span the illumination boundary's
offset (+-5.5, several class widths). Deterministic given --seed and --num on one machine.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from jaxfair import cli
from jaxfair.convert.guard import CheckpointError
from jaxfair.demo import fit_generator, world
from jaxfair.pipeline import recipe, variations

_OUT = flags.DEFINE_string("out", "checkpoints/demo/latent_directions.pkl", "File to write.")
_GENERATOR = flags.DEFINE_string("generator", "checkpoints/demo/generator",
                                 "Demo generator checkpoint.")
_NUM = flags.DEFINE_integer("num", 8192, "Prior draws labelled by their world factors.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the draws.")
_SHEET = flags.DEFINE_string("sheet", "checkpoints/demo/sheets/paper_recipe.png",
                             "Contact sheet of the recipe on 4 identities ('' for none).")

PROG = "jaxfair.demo.paper_directions"

# name -> (factor, side): 'high' = top 20 % vs middle 40-60 %, 'low' = bottom 20 % vs middle.
EXPRESSIONS = {"smile": ("smile", "high"), "surprise": ("eye_size", "high"),
               "squint": ("eye_size", "low"), "disgust": ("brow_angle", "high"),
               "scream": ("mouth_width", "high")}
BINARY = {"pose": "rotation", "illumination": "bg_lightness"}


def _analysis(w: np.ndarray, u: np.ndarray, pos: np.ndarray, neg: np.ndarray,
              w_avg: np.ndarray) -> dict:
    """Boundary between w[pos] and w[neg]: normal [1, w_dim] (orthogonal to w_avg, see the
    module docstring) and the stats of ``w . n`` on each side."""
    sel = pos | neg
    n, _ = variations.fit_direction(jnp.asarray(u[sel]), jnp.asarray(pos[sel]))
    a = w_avg / np.linalg.norm(w_avg)
    n = n.astype(np.float64) - (n @ a) * a
    n /= np.linalg.norm(n)
    proj = w @ n
    return {"normal": n[None].astype(np.float32),
            "pos_stats": {"mean": np.float64(proj[pos].mean()),
                          "std": np.float64(proj[pos].std())},
            "neg_stats": {"mean": np.float64(proj[neg].mean()),
                          "std": np.float64(proj[neg].std())}}


def fit(generator: str, num: int, seed: int) -> tuple[dict, dict, dict]:
    """(expression, pose, illumination) analyses of the demo generator's W."""
    from jaxfair import load_generator

    G = load_generator(generator)
    z = jax.random.normal(jax.random.key(seed), (num, G.config.z_dim))
    w = np.concatenate([np.asarray(G.mapping(z[i:i + 1024])[:, 0], np.float64)
                        for i in range(0, num, 1024)])
    w_avg = np.asarray(G.state["mapping"]["w_avg"][...], np.float64)
    f = np.asarray(fit_generator.factors_from_latent(z))
    col = {name: f[:, world.FACTORS.index(name)] for name in world.FACTORS}
    # Standardised latents for the fit (W's standardisation is isotropic: same normal).
    u = (w - w.mean(0)) / np.sqrt(np.mean((w - w.mean(0)) ** 2))
    expression = {}
    for name, (factor, side) in EXPRESSIONS.items():
        x = col[factor]
        neutral = (x > 0.4) & (x < 0.6)
        pos = x > 0.8 if side == "high" else x < 0.2
        expression[("neutral", name)] = _analysis(w, u, pos, neutral, w_avg)
    binary = {kind: _analysis(w, u, col[factor] > 0.7, col[factor] < 0.3, w_avg)
              for kind, factor in BINARY.items()}
    return expression, binary["pose"], binary["illumination"]


def contact_sheet(generator: str, r: recipe.Recipe, seed: int, n: int = 4) -> np.ndarray:
    """uint8 sheet: one row per identity, its own image then its len(r) moves."""
    from jaxfair import load_generator
    from jaxfair.io import images as imlib

    G = load_generator(generator)
    w = G.mapping(jax.random.normal(jax.random.key(seed + 1), (n, G.config.z_dim)))[:, 0]
    moved = recipe.apply(r, w)  # [n, M, w_dim]
    ws = jnp.concatenate([w[:, None], moved], axis=1).reshape(-1, w.shape[-1])
    ws = jnp.broadcast_to(ws[:, None], (ws.shape[0], G.config.num_ws, ws.shape[-1]))
    imgs = np.concatenate([np.asarray(imlib.to_uint8(G.synthesis(ws[i:i + 64])))
                           for i in range(0, ws.shape[0], 64)])
    return imlib.contact_sheet(imgs, cols=len(r) + 1)


def main():
    try:
        expression, pose, illumination = fit(_GENERATOR.value, _NUM.value, _SEED.value)
        recipe.save_paper(_OUT.value, expression, pose, illumination)
        w_dim = pose["normal"].shape[1]
        r = recipe.load(_OUT.value, w_dim, length=1.0)
        if _SHEET.value:
            from PIL import Image

            Image.fromarray(contact_sheet(_GENERATOR.value, r, _SEED.value)).save(_SHEET.value)
    except (ValueError, CheckpointError, OSError) as e:
        cli.fail(PROG, e)
    print(f"wrote {_OUT.value}: {len(expression)} expressions, pose, illumination "
          f"(w_dim {w_dim}, {len(r)} moves per identity)")


if __name__ == "__main__":
    cli.run(main, PROG)
