"""The paper's variation recipe: file reading (restricted), moves vs the original formulas."""

import os
import pickle

import jax
import numpy as np
import pytest

from jaxfair.pipeline import recipe, variations

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "checkpoints", "demo")
NAMES = ("smile", "surprise", "squint", "disgust", "scream")


def _unit(rng, d):
    v = rng.standard_normal(d)
    return (v / np.linalg.norm(v))[None]


def _data(w_dim=8, seed=0, mean_type=np.float64):
    """A latent_directions.pkl-like dict (pose: neg side wider; illumination: pos wider)."""
    rng = np.random.default_rng(seed)
    stats = lambda m: {"mean": mean_type(m), "std": mean_type(0.5)}  # noqa: E731
    expr = {("neutral", n): {"normal": _unit(rng, w_dim), "pos_stats": stats(1.0 + i),
                             "neg_stats": stats(-0.3)} for i, n in enumerate(NAMES)}
    return {"expression": expr,
            "pose": {"normal": _unit(rng, w_dim), "pos_stats": stats(1.5),
                     "neg_stats": stats(-2.5)},
            "illumination": {"normal": _unit(rng, w_dim), "pos_stats": stats(3.0),
                             "neg_stats": stats(-1.0)}}


def _original(w: np.ndarray, data: dict) -> np.ndarray:
    """youneednodataset's formulas for one w [1, w_dim], restated in float64 numpy."""
    out = []
    for a in data["expression"].values():
        n = a["normal"]
        out.append(w - w.dot(n.T) * n + 0.75 * a["pos_stats"]["mean"] * n)
    for kind, scaling in (("pose", 0.75), ("illumination", 1.25)):
        a = data[kind]
        e = max(-a["neg_stats"]["mean"], a["pos_stats"]["mean"])
        for s in scaling * np.linspace(-e, e, 20):
            out.append(w + s * a["normal"])
    return np.concatenate(out)  # [45, w_dim]


def _write(tmp_path, obj, protocol=4, name="dirs.pkl"):
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_moves_match_original_formulas(tmp_path, protocol):
    data = _data()
    r = recipe.load(_write(tmp_path, data, protocol), w_dim=8, length=1.0)
    ws = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    got = np.asarray(jax.jit(recipe.apply_moves)(ws, r.normals, r.keep, r.shift))
    assert got.shape == (3, 45, 8)
    for i in range(3):
        np.testing.assert_allclose(got[i], _original(ws[i:i + 1].astype(np.float64), data),
                                   atol=1e-5)


def test_move_table():
    r = recipe.from_paper(_data(), 8, "x.pkl")
    kinds = [m.kind for m in r.moves]
    assert kinds == ["expression"] * 5 + ["pose"] * 20 + ["illumination"] * 20
    assert [m.name for m in r.moves[:5]] == list(NAMES)  # the file's order
    assert [m.step for m in r.moves[5:25]] == list(range(20))
    pose = [m.scale for m in r.moves[5:25]]
    np.testing.assert_allclose(pose, 0.75 * np.linspace(-2.5, 2.5, 20), rtol=1e-6)  # -neg
    illum = [m.scale for m in r.moves[25:]]
    np.testing.assert_allclose(illum, 1.25 * np.linspace(-3, 3, 20), rtol=1e-6)  # pos
    assert r.moves[2].scale == pytest.approx(0.75 * 3.0)
    assert set(r.table()[0]) == {"kind", "name", "step", "scale"}


def test_wplus_moves_every_layer_alike():
    r = recipe.from_paper(_data(), 8, "x.pkl")
    w = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
    wp = np.repeat(w[:, None], 4, axis=1)
    wp[:, 3] += 0.5  # a layer with its own row moves by its own projection
    got = np.asarray(recipe.apply(r, wp))
    assert got.shape == (2, 45, 4, 8)
    np.testing.assert_allclose(got[:, :, 0], np.asarray(recipe.apply(r, w)), atol=1e-5)
    np.testing.assert_allclose(got[:, :, 3], np.asarray(recipe.apply(r, wp[:, 3])), atol=1e-5)


@pytest.mark.parametrize("mean_type", [float, np.float32, lambda m: np.array([m])])
def test_scalar_spellings(tmp_path, mean_type):
    r = recipe.load(_write(tmp_path, _data(mean_type=mean_type)), 8, 1.0)
    assert len(r) == 45


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("obj, w_dim, message", [
    (_data(w_dim=8), 16, "w_dim 8, the generator's w_dim is 16"),
    ({"expression": {}, "pose": {}, "illumination": {}}, 8, "non-empty"),
    ({k: v for k, v in _data().items() if k != "pose"}, 8, "missing pose"),
    ({**_data(), "pose": {**_data()["pose"], "normal": 2 * _data()["pose"]["normal"]}}, 8,
     "unit vector"),
    ({**_data(), "pose": {**_data()["pose"], "pos_stats": {"mean": np.nan}}}, 8,
     "finite number"),
    ({**_data(), "illumination": _Evil()}, 8, "refused to load global"),
])
def test_bad_files_one_line(tmp_path, obj, w_dim, message):
    path = _write(tmp_path, obj)
    with pytest.raises(recipe.DirectionsError) as e:
        recipe.load(path, w_dim, 1.0)
    assert message in str(e.value) and path in str(e.value) and "\n" not in str(e.value)


def test_not_a_pickle_and_truncated(tmp_path):
    p = tmp_path / "junk.pkl"
    p.write_bytes(b"hello")
    with pytest.raises(recipe.DirectionsError, match="not a pickle"):
        recipe.load(str(p), 8, 1.0)
    full = pickle.dumps(_data(), protocol=4)
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(recipe.DirectionsError, match="corrupt"):
        recipe.load(str(p), 8, 1.0)


def test_npz_directions_as_sweeps():
    r = recipe.load(os.path.join(DEMO, "directions.npz"), 64, length=2.0, steps=5)
    d = variations.load(os.path.join(DEMO, "directions.npz"), 64)
    assert len(r) == 5 * len(d.names) and r.moves[0].kind == d.names[0]
    np.testing.assert_allclose([m.scale for m in r.moves[:5]],
                               d.scales[0] * 2.0 * np.linspace(-1, 1, 5), rtol=1e-6)
    w = np.zeros((1, 64), np.float32) + 0.3
    moved = np.asarray(recipe.apply(r, w))[0]
    np.testing.assert_allclose(moved - w, np.outer(r.shift, d.vectors[0]), atol=1e-6)


def test_demo_file():
    r = recipe.load(os.path.join(DEMO, "latent_directions.pkl"), 64, length=1.0)
    assert len(r) == 45 and r.w_dim == 64
    assert [m.name for m in r.moves[:5]] == list(NAMES)
    with pytest.raises(recipe.DirectionsError, match="w_dim 64"):
        recipe.load(os.path.join(DEMO, "latent_directions.pkl"), 512, length=1.0)


def test_generate_with_paper_recipe_crop_and_export(tmp_path):
    """The main job: 45 moves per identity, each re-classified, with its move and group
    check recorded; ArcFace crops written; a webdataset export made at the end."""
    import demo_config
    import webdataset as wds

    from jaxfair.dataset.reader import Dataset
    from jaxfair.pipeline import run as pipeline

    c = demo_config.load("smoke")
    c.attributes = ("tone",)
    c.identities_per_group = 1
    c.units_per_step = 3
    c.variation_recipe = "paper"
    c.directions = os.path.join(DEMO, "latent_directions.pkl")
    c.keep_outside_group = True
    c.crop = "arcface112"
    c.output_format = "webdataset"
    c.generator, c.classifier = (os.path.join(DEMO, n) for n in ("generator", "classifier"))
    work = str(tmp_path / "ds")
    summary = pipeline.run(c, work, log=lambda m: None)
    ds = Dataset.open(work)
    recs = list(ds.records())
    assert ds.plan["variations"] == 45 and summary["images"] == len(recs) == 3 * 46
    moves = [r["move"] for r in recs if r["variation"] > 0]
    assert [m["kind"] for m in moves[:45]] == ["expression"] * 5 + ["pose"] * 20 + \
        ["illumination"] * 20
    assert all(r["move"] is None for r in recs if r["variation"] == 0)
    outside = sum(not r["in_group"] for r in recs if r["variation"] > 0)
    assert all(r["in_group"] == (r["target_probs"]["tone"] >= c.threshold) for r in recs)
    assert ds.load_image(recs[0]).shape == (112, 112, 3)
    shards = sorted(os.listdir(os.path.join(work, "export-webdataset")))
    tars = [os.path.join(work, "export-webdataset", s) for s in shards if s.endswith(".tar")]
    assert sum(1 for _ in wds.WebDataset(tars, shardshuffle=False, empty_check=False)) == 138
    print(f"moved faces outside their group: {outside} of {len(moves)}")


def test_generate_refuses_bad_directions_one_line(tmp_path):
    import subprocess
    import sys

    path = _write(tmp_path, _data(w_dim=8))
    message = "w_dim 8, the generator's w_dim is 64"
    work = str(tmp_path / "ds")
    res = subprocess.run([sys.executable, "-m", "jaxfair.generate",
                          "--config=configs/demo.py:smoke",
                          f"--workdir={work}", "--config.variation_recipe=paper",
                          f"--config.directions={path}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and message in lines[-1] and path in lines[-1], res.stderr
    assert "Traceback" not in res.stderr and not os.path.exists(work)
