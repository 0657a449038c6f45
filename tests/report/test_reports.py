"""Both reports on tiny demo datasets: every file exists and the numbers match the records."""

import base64
import importlib.util
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from dataset_writer import DEMO, ROOT, write_dataset
from PIL import Image

import jaxfair
from jaxfair import keys as keylib
from jaxfair.io import images as imlib
from jaxfair.report import audit, dataset_report

GROUPS = ["tone=light,hair=short", "tone=light,hair=long", "tone=medium,hair=short"]
PER_GROUP = 3
AUDIT_NUM, AUDIT_BATCH = 40, 16
RC = dict(sample_per_group=8, sheet_size=8, sheet_cols=4, thumb_size=32, diversity_max=100,
          near_duplicate_fraction=0.05, batch_size=16, seed=0, reference_size=8,
          reference_budget=256, reference_permutations=49)


@pytest.fixture(scope="module")
def models():
    return (jaxfair.load_generator(os.path.join(DEMO, "generator")),
            jaxfair.load_classifier(os.path.join(DEMO, "classifier")))


@pytest.fixture(scope="module", autouse=True)
def complete_cli(models, partial, tmp_path_factory):
    """3 groups x 3 identities x 2 images, PNG, W; group 3 has a near-copy and an excluded
    extra identity. Its report comes from the entry point, as a user makes it, started
    after the in-process ``partial`` report (so it loads that report's compiled programs
    from the session cache: 72 instead of 86 CPU s for this module) and running beside
    the other in-process tests."""
    root = str(tmp_path_factory.mktemp("complete"))
    units = write_dataset(root, *models, GROUPS, PER_GROUP, duplicate_in=GROUPS[2],
                          excluded_in=GROUPS[2])
    cmd = [sys.executable, "-m", "jaxfair.report", "dataset", f"--dataset={root}",
           *(f"--config.report.{k}={v}" for k, v in RC.items())]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with open(os.path.join(root, "manifest.json")) as f:
        excluded = set(json.load(f)["excluded"])
    records = [r for u in units.values() for r in u["records"] if r["id"] not in excluded]
    yield root, records, proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def complete(complete_cli):
    root, records, proc = complete_cli
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    with open(os.path.join(root, "report", "report.json")) as f:
        return root, records, json.load(f), stdout


@pytest.fixture(scope="module")
def partial(models, tmp_path_factory):
    """Latents only (no images), W+, 2 of 3 units finished, no manifest: library call."""
    root = str(tmp_path_factory.mktemp("partial"))
    units = write_dataset(root, *models, GROUPS, PER_GROUP, image_format="none",
                          latent_space="wplus", finished=2, manifest=False, seed=1)
    # Raw pixels stand in for a face-embedding model (the embedders= hook).
    report = dataset_report.run(root, ml_collections.ConfigDict(RC), log=lambda s: None,
                                embedders={"pixels": lambda x: x.reshape(len(x), -1)})
    return root, [r for u in (0, 1) for r in units[u]["records"]], report


def demo_config():
    """configs/demo.py with absolute checkpoint paths and the test's batch size."""
    spec = importlib.util.spec_from_file_location("demo_cfg", os.path.join(ROOT, "configs",
                                                                           "demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()
    c.generator, c.classifier = os.path.join(DEMO, "generator"), os.path.join(DEMO, "classifier")
    c.report.batch_size = AUDIT_BATCH
    return c


def reclassified(C, images_uint8):
    """What the report should find: argmax of C on (x - 128) / 127.5, computed here."""
    probs = C.predict((np.asarray(images_uint8, np.float32) - 128) / 127.5)
    return {a: np.argmax(np.asarray(p), -1) for a, p in probs.items()}


def check_counts_and_sections(report, records, groups_present):
    for g in GROUPS:
        mine = [r for r in records if r["group"] == g]
        c = report["counts"][g]
        assert c["quota"] == PER_GROUP
        assert c["identities"] == len({r["identity"] for r in mine})
        assert c["images"] == len(mine)
        assert (c["identities"] > 0) == (g in groups_present)
    own = [r for r in records if r["variation"] == 0]
    assert report["identities"] == len(own) and report["images"] == len(records)
    for g in groups_present:
        glasses = [r["attributes"]["glasses"]["class"] for r in own if r["group"] == g]
        nt = report["non_target"]["glasses"][g]
        assert {k: v["count"] for k, v in nt.items()} == \
            {c: glasses.count(c) for c in ("no", "yes")}
        for a in ("tone", "hair"):
            p = np.array([r["target_probs"][a] for r in records if r["group"] == g])
            tp = report["target_probs"][a][g]
            assert tp["n"] == len(p) and tp["min"] == pytest.approx(p.min())
            assert tp["median"] == pytest.approx(np.median(p))
    assert "tone" not in report["non_target"]  # every group fixes tone and hair


def check_agreement(report, records, predicted):
    own = [r for r in records if r["variation"] == 0]
    agr = report["agreement"]
    assert agr["n"] == len(own)
    for a, pred in predicted.items():
        classes = {"tone": ("light", "medium", "dark"), "hair": ("short", "long"),
                   "glasses": ("no", "yes")}[a]
        same = sum(classes[p] == r["attributes"][a]["class"] for p, r in zip(pred, own))
        assert agr["attributes"][a]["count"] == same and agr["attributes"][a]["total"] == len(own)
    # The demo classifier is sure of its renders: uint8 rounding never flips a label here.
    assert agr["in_group_all"]["share"] == 1.0


def test_partial_dataset_renders_latents(partial, models):
    root, records, report = partial
    G, C = models
    assert not report["complete"] and report["units_finished"] == 2
    assert report["units_planned"] == 3
    check_counts_and_sections(report, records, GROUPS[:2])
    assert "matches_manifest" not in report["counts"][GROUPS[0]]
    own = [r for r in records if r["variation"] == 0]
    lat = np.stack([np.load(os.path.join(root, "shards", f"{r['unit']:05d}",
                                         "latents.npy"))[r["latent_row"]] for r in own])
    assert lat.shape[1:] == (G.config.num_ws, G.config.w_dim)
    padded = np.concatenate([lat, np.repeat(lat[-1:], 16 - len(lat), 0)])  # compiled shape
    images = np.asarray(imlib.to_uint8(G.synthesis(padded)))[:len(lat)]
    check_agreement(report, records, reclassified(C, images))
    out = os.path.join(root, "report")
    assert sorted(os.listdir(os.path.join(out, "sheets"))) == \
        sorted(f"{dataset_report.sheet_name(g)}.png" for g in GROUPS[:2])
    assert os.path.isfile(os.path.join(out, "diversity_latent_wplus.png"))
    pixels = report["diversity"]["pixels"]
    assert pixels["metric"] == "cosine" and os.path.isfile(os.path.join(out,
                                                                          "diversity_pixels.png"))
    x = (images.reshape(len(images), -1).astype(np.float64) - 128) / 127.5
    first = x[:PER_GROUP] / np.linalg.norm(x[:PER_GROUP], axis=1, keepdims=True)
    d = 1 - first @ first.T
    assert pixels["groups"][GROUPS[0]]["mean_pairwise"] == pytest.approx(
        d[np.triu_indices(PER_GROUP, 1)].mean(), rel=1e-6)


def test_report_replaces_its_own_output_only(partial, tmp_path):
    root, _, _ = partial
    rc = ml_collections.ConfigDict(RC)
    out = os.path.join(root, "report")
    before = os.path.getmtime(os.path.join(out, "report.json"))
    dataset_report.write(out, {"report.json": b"{}", "index.html": b"x"})
    assert sorted(os.listdir(out)) == ["index.html", "report.json"]
    assert os.path.getmtime(os.path.join(out, "report.json")) >= before
    assert not [n for n in os.listdir(root) if n.startswith(".")]  # no temp dirs left
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a jaxfair report"):
        dataset_report.run(root, rc, out=str(tmp_path / "other"))
    assert os.listdir(tmp_path / "other") == ["keep.txt"]


def test_audit_counts_match_an_independent_draw(models, tmp_path):
    G, C = models
    config = demo_config()
    out = str(tmp_path / "audit")
    result = audit.run(config, out, AUDIT_NUM, log=lambda s: None)
    assert sorted(os.listdir(out)) == ["audit.json", "audit.png", "audit.txt"]
    with open(os.path.join(out, "audit.json")) as f:
        saved = json.load(f)
    assert saved == {k: v for k, v in result.items() if k != "table"}
    with open(os.path.join(out, "audit.txt")) as f:
        assert f.read() == result["table"] + "\n"
    assert saved["num"] == AUDIT_NUM and saved["truncation_psi"] == 1.0
    # Batch b: z from the first half of split(labels(root(seed), b)), as unguided sampling.
    root = keylib.root(config.report.seed)
    zs = [jax.random.normal(jax.random.split(keylib.labels(root, b))[0],
                            (AUDIT_BATCH, G.config.z_dim)) for b in range(3)]
    probs = [C.predict(G(z, config.truncation_psi)) for z in zs]
    labels = {a.name: np.concatenate([np.argmax(np.asarray(p[a.name]), -1)
                                      for p in probs])[:AUDIT_NUM] for a in C.schema.attributes}
    for a in C.schema.attributes:
        counts = np.bincount(labels[a.name], minlength=a.size)
        assert [saved["attributes"][a.name][c]["count"] for c in a.classes] == counts.tolist()
    light_short = np.sum((labels["tone"] == 0) & (labels["hair"] == 0))
    assert saved["combinations"]["tone=light,hair=short"]["count"] == light_short
    assert sum(p["count"] for p in saved["combinations"].values()) == AUDIT_NUM
    tone = [saved["attributes"]["tone"][c]["share"] for c in ("light", "medium", "dark")]
    assert tone[0] > 0.5 and tone[0] > tone[1] > tone[2]  # the demo world's built-in skew
    with Image.open(os.path.join(out, "audit.png")) as im:
        assert im.format == "PNG"
    with pytest.raises(FileExistsError, match="not empty"):
        audit.run(config, out, AUDIT_NUM, log=lambda s: None)


def test_entry_point_rejects_a_non_dataset_dir(tmp_path):
    (tmp_path / "junk.txt").write_text("x")
    r = subprocess.run([sys.executable, "-m", "jaxfair.report", "dataset",
                        f"--dataset={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in r.stderr.splitlines() if "error:" in line]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(lines) == 1 and "is not a jaxfair dataset (no plan.json)" in lines[0]
    assert os.listdir(tmp_path) == ["junk.txt"]


# The entry point's report of the complete dataset, started by complete_cli, is read last.
def test_complete_dataset_files(complete):
    root, records, report, stdout = complete
    out = os.path.join(root, "report")
    pngs = ["counts.png", "agreement.png", "target_probs.png", "non_target_glasses.png",
            "diversity_latent_w.png", "diversity_classifier_features.png"]
    sheets = [f"sheets/{dataset_report.sheet_name(g)}.png" for g in GROUPS]
    for name in pngs + sheets:
        with Image.open(os.path.join(out, name)) as im:
            assert im.format == "PNG" and min(im.size) > 20
    with Image.open(os.path.join(out, sheets[0])) as im:  # 3 tiles of 32 px, 2 px padding
        assert im.size == (3 * 34 + 2, 36)
    with open(os.path.join(out, "index.html")) as f:
        page = f.read()
    for name in pngs:  # every figure inline, byte for byte
        with open(os.path.join(out, name), "rb") as f:
            assert base64.b64encode(f.read()).decode() in page
    assert page.count("data:image/jpeg;base64,") == len(GROUPS)
    assert "not an identity-recognition measure" in page
    assert f"wrote the report of {PER_GROUP * 3} identities and {PER_GROUP * 6} images " \
        "(complete dataset)" in stdout
    assert sorted(os.listdir(root)) == ["manifest.json", "plan.json", "report", "shards"]


def test_complete_dataset_numbers(complete, models):
    root, records, report, _ = complete
    assert report["complete"] and report["units_finished"] == 3
    assert report["excluded_records"] == 2  # the extra identity's two images
    check_counts_and_sections(report, records, GROUPS)
    assert all(c["matches_manifest"] for c in report["counts"].values())
    own = [r for r in records if r["variation"] == 0]
    files = np.stack([np.asarray(Image.open(os.path.join(root, "shards", f"{r['unit']:05d}",
                                                         r["file"]))) for r in own])
    check_agreement(report, records, reclassified(models[1], files))
    lat = report["diversity"]["latent (w)"]
    assert [lat["groups"][g]["near_duplicate_pairs"] for g in GROUPS] == [0, 0, 1]
    w = {g: np.stack([np.load(os.path.join(root, "shards", f"{r['unit']:05d}",
                                           "latents.npy"))[r["latent_row"]]
                      for r in own if r["group"] == g]) for g in GROUPS}
    for g in GROUPS:
        pairs = [np.sqrt(np.mean((w[g][i] - w[g][j]) ** 2)) for i in range(PER_GROUP)
                 for j in range(i + 1, PER_GROUP)]
        assert lat["groups"][g]["mean_pairwise"] == pytest.approx(np.mean(pairs), rel=1e-6)
    feat = report["diversity"]["classifier features"]["groups"][GROUPS[2]]
    assert feat["near_duplicate_pairs"] >= 1  # the near-copy renders an almost equal face


def test_unguided_reference_flags_the_planted_near_copy(complete, partial):
    _, _, report, _ = complete
    ref = report["unguided_reference"]
    assert ref["rule"] == {"threshold": 0.5, "mode": "argmax", "truncation_psi": 1.0,
                           "noise_mode": "const"}
    assert ref["evaluations"] % RC["batch_size"] == 0
    assert 0 < ref["evaluations"] <= RC["reference_budget"]
    for g in GROUPS:
        v = ref["groups"][g]
        assert v["identities"] == v["reference"] == v["compared"] == PER_GROUP
        assert v["latent_space"] == "w" and v["features"]["n"] == PER_GROUP
    # Two of group 3's three identities are near-copies (W + 1e-3 noise): clustered.
    near = ref["groups"][GROUPS[2]]["latent"]
    assert near["nn_ratio"] > 2.5 and near["nn_dataset"] < 0.5 * near["nn_reference"]
    assert all(ref["groups"][g]["latent"]["nn_ratio"] < 2 for g in GROUPS[:2])
    # The partial W+ dataset: its two finished groups, against W+ reference latents.
    part = partial[2]["unguided_reference"]
    assert sorted(part["groups"]) == sorted(GROUPS[:2])
    assert {v["latent_space"] for v in part["groups"].values()} == {"wplus"}


@pytest.mark.parametrize("key,value", [("reference_size", 2), ("reference_budget", 0),
                                       ("reference_permutations", 10)])
def test_bad_reference_settings_are_refused(key, value):
    with pytest.raises(ValueError, match=f"report.{key}"):
        dataset_report.validate(ml_collections.ConfigDict({**RC, key: value}))
