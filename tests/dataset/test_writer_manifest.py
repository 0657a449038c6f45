"""Shards (atomic, DONE last, leftovers cleaned), plan checks, cross-unit near-duplicates."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from jaxfair.dataset import format as fmt
from jaxfair.dataset import manifest, writer
from jaxfair.dataset.writer import UnitOutput
from jaxfair.pipeline.plan import Plan, Unit


def read_json(path):
    with open(path) as f:
        return json.load(f)


def output(unit: Unit, latents: np.ndarray, group="g=a") -> UnitOutput:
    n = len(latents)
    recs = [{"id": f"u{unit.id:05d}-i{i:03d}-v00", "identity": f"u{unit.id:05d}-i{i:03d}",
             "group": group, "variation": 0, "file": None, "latent_row": i,
             "attributes": {}, "target_probs": {}, "unit": unit.id, "seed": 0, "search": 0}
            for i in range(n)]
    imgs = np.random.default_rng(unit.id).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return UnitOutput(unit, recs, latents.astype(np.float32), imgs, None,
                      {"candidates": 10, "variations_rejected": 1})


def test_shard_is_complete_with_done_and_images_decode(tmp_path):
    d = str(tmp_path)
    out = output(Unit(3, 0, 0, 2), np.arange(8).reshape(2, 4))
    os.makedirs(os.path.join(d, fmt.SHARDS))
    assert writer.write_shard(d, out, "png", "float16") == 2
    shard = writer.shard_dir(d, 3)
    assert sorted(os.listdir(shard)) == ["DONE", "latents.npy", "records.jsonl",
                                         "u00003-i000-v00.png", "u00003-i001-v00.png"]
    with open(os.path.join(shard, "records.jsonl")) as f:
        recs = [json.loads(x) for x in f]
    assert [r["file"] for r in recs] == ["u00003-i000-v00.png", "u00003-i001-v00.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(os.path.join(shard, recs[1]["file"]))),
                                  out.images[1])
    lat = np.load(os.path.join(shard, "latents.npy"))
    assert lat.dtype == np.float16 and lat.shape == (2, 4)
    assert read_json(os.path.join(shard, "DONE"))["records"] == 2
    assert writer.done_units(d) == {3}


def test_leftovers_of_a_killed_run_are_removed_but_done_shards_kept(tmp_path):
    d = str(tmp_path)
    os.makedirs(os.path.join(d, fmt.SHARDS, ".tmp-00001"))
    os.makedirs(os.path.join(d, fmt.SHARDS, "00002"))  # renamed dir never has no DONE,
    writer.write_shard(d, output(Unit(4, 0, 0, 1), np.zeros((1, 4))), "none", "float32")
    assert writer.clean_partial(d, [1, 2, 4]) == 2
    assert sorted(os.listdir(os.path.join(d, fmt.SHARDS))) == ["00004"]


def test_writer_pool_reports_write_errors(tmp_path):
    d = str(tmp_path / "ds")
    w = writer.Writer(d, "png", "float32", threads=2, max_pending=2)
    w.submit(output(Unit(0, 0, 0, 1), np.zeros((1, 4))))
    # A file where unit 1's temp directory must go: its write fails (even as root).
    with open(os.path.join(d, fmt.SHARDS, ".tmp-00001"), "w"):
        pass
    w.submit(output(Unit(1, 0, 0, 1), np.zeros((1, 4))))
    with pytest.raises(OSError):
        w.close()
    assert writer.done_units(d) == {0}


def test_near_duplicates_across_units_are_excluded_in_unit_order(tmp_path):
    d = str(tmp_path)
    os.makedirs(os.path.join(d, fmt.SHARDS))
    plan = Plan.create(["g=a", "g=b"], quota=2, per_unit=2, per_step=2)
    base = np.array([[0.0, 0, 0, 0], [4, 4, 4, 4]])
    writer.write_shard(d, output(plan.units[0], base, "g=a"), "none", "float32")
    # group b holds a copy of a's first identity: other group, so not a duplicate.
    writer.write_shard(d, output(plan.units[1], base + [[0.01], [9]], "g=b"), "none", "float32")
    more = plan.extend({0: 2})
    near = np.array([[4.04, 4, 4, 4], [-8, 0, 0, 0]])  # first within 0.05 w_std of u0-i001
    writer.write_shard(d, output(more.units[2], near, "g=a"), "none", "float32")
    excluded, kept = manifest.exclude_near_duplicates(d, more.units, radius=0.05, w_std=1.0)
    assert excluded == {"u00002-i000"} and kept == {0: 3, 1: 2}
    excluded, _ = manifest.exclude_near_duplicates(d, more.units, radius=0.01, w_std=1.0)
    assert excluded == set()
    summary = manifest.summarise(d, {"format": fmt.FORMAT}, more, {"u00002-i000"})
    assert summary["counts"]["g=a"] == {"quota": 2, "identities": 3, "images": 3}
    assert summary["excluded"] == ["u00002-i000-v00"]
    assert summary["variations_rejected"] == 3 and summary["candidates_evaluated"] == 30


def test_plan_file_must_match_on_resume(tmp_path):
    d = str(tmp_path / "ds")
    head = {"format": fmt.FORMAT, "config": {"a": 1, "b": {"c": 2}}}
    manifest.prepare(d, head, overwrite=False)
    manifest.prepare(d, dict(head, jaxfair_version="other"), overwrite=False)  # same run
    changed = {"format": fmt.FORMAT, "config": {"a": 1, "b": {"c": 3}}}
    with pytest.raises(manifest.PlanMismatch, match=r"config.b.c: 2 -> 3"):
        manifest.prepare(d, changed, overwrite=False)
    os.makedirs(os.path.join(d, "shards", "00000"))
    manifest.prepare(d, changed, overwrite=True)
    assert not os.path.exists(os.path.join(d, "shards"))
    assert read_json(os.path.join(d, "plan.json"))["config"]["b"]["c"] == 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("mine")
    with pytest.raises(manifest.PlanMismatch, match="holds no jaxfair dataset"):
        manifest.prepare(str(other), head, overwrite=False)
