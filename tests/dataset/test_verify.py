"""DONE checksums, damaged shards named and removed, temporary leftovers, the reader's size
check and a corrupt plan.json (no models)."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from jaxfair.dataset import format as fmt
from jaxfair.dataset import manifest, verify, writer
from jaxfair.dataset.lock import LOCK
from jaxfair.dataset.reader import Dataset, DatasetError
from jaxfair.dataset.writer import UnitOutput
from jaxfair.pipeline.plan import Unit

SCHEMA = {"tone": ["light", "dark"]}


def output(unit_id: int, n: int = 2) -> UnitOutput:
    recs = [{"id": f"u{unit_id:05d}-i{i:03d}-v00", "identity": f"u{unit_id:05d}-i{i:03d}",
             "group": "tone=dark", "variation": 0, "file": None, "latent_row": i,
             "attributes": {}, "target_probs": {}, "unit": unit_id, "seed": 0, "search": 0}
            for i in range(n)]
    rng = np.random.default_rng(unit_id)
    return UnitOutput(Unit(unit_id, 0, 0, n), recs, rng.normal(size=(n, 4)).astype(np.float32),
                      rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
                      rng.normal(size=(n, 3)).astype(np.float32), {"candidates": 5})


def dataset(root, units=(0, 1, 2)) -> str:
    d = str(root)
    os.makedirs(os.path.join(d, writer.SHARDS))
    for u in units:
        writer.write_shard(d, output(u), "png", "float32")
    with open(os.path.join(d, "plan.json"), "w") as f:
        json.dump({"format": "jaxfair-dataset/1", "method": "search", "attributes": ["tone"],
                   "schema": SCHEMA, "groups": {"tone=dark": 6}, "variations": 0,
                   "image_format": "png", "latent_space": "w"}, f)
    return d


def shard(d, u):
    return writer.shard_dir(d, u)


def test_done_records_size_and_sha256_of_every_file(tmp_path):
    d = dataset(tmp_path, (3,))
    done = verify.read_done(shard(d, 3))
    names = sorted(n for n in os.listdir(shard(d, 3)) if n != "DONE")
    assert sorted(done["files"]) == names == ["latents.npy", "records.jsonl",
                                              "u00003-i000-v00.png", "u00003-i001-v00.png",
                                              "z.npy"]
    for name in names:
        data = Path(shard(d, 3), name).read_bytes()
        assert done["files"][name] == {"size": len(data),
                                       "sha256": hashlib.sha256(data).hexdigest()}
    assert verify.damage(shard(d, 3)) is None
    np.testing.assert_array_equal(np.load(os.path.join(shard(d, 3), "z.npy")), output(3).z)


def truncate(path, keep=10):
    with open(path, "r+b") as f:
        f.truncate(keep)


def flip_byte(path):
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(path).write_bytes(bytes(data))


@pytest.mark.parametrize("damage_it, name, reason", [
    (lambda s: truncate(f"{s}/latents.npy"), "latents.npy", "truncated"),
    (lambda s: truncate(f"{s}/records.jsonl"), "records.jsonl", "truncated"),
    (lambda s: flip_byte(f"{s}/u00001-i001-v00.png"), "u00001-i001-v00.png", "sha256 differs"),
    (lambda s: os.remove(f"{s}/z.npy"), "z.npy", "missing"),
    (lambda s: Path(s, "DONE").write_text("{\"unit\": 1,"), "DONE", "unreadable"),
])
def test_a_damaged_shard_is_named_and_removed_the_others_kept(tmp_path, damage_it, name,
                                                               reason):
    d = dataset(tmp_path)
    damage_it(shard(d, 1))
    lines = []
    assert verify.remove_damaged(d, [0, 1, 2, 7], lines.append) == [1]
    assert len(lines) == 1 and f"{shard(d, 1)}/{name}" in lines[0] and reason in lines[0]
    assert writer.done_units(d) == {0, 2}
    assert verify.remove_damaged(d, [0, 2], lines.append) == [] and len(lines) == 1


def test_a_done_written_before_checksums_is_trusted(tmp_path):
    d = dataset(tmp_path, (0,))
    with open(os.path.join(shard(d, 0), "DONE"), "w") as f:
        json.dump({"unit": 0, "records": 2, "candidates": 5}, f)
    assert verify.damage(shard(d, 0)) is None


def test_every_temporary_leftover_is_removed(tmp_path):
    d = dataset(tmp_path, (0,))
    os.makedirs(os.path.join(d, writer.SHARDS, ".tmp-00001"))  # this process's unit
    os.makedirs(os.path.join(d, writer.SHARDS, ".tmp-00042", "x"))  # another process's
    Path(d, "manifest.json.tmp-123").write_text("{")
    os.makedirs(os.path.join(d, "imagefolder.tmp-9"))
    removed = verify.remove_temporaries(d)
    assert sorted(os.path.basename(p) for p in removed) == [
        ".tmp-00001", ".tmp-00042", "imagefolder.tmp-9", "manifest.json.tmp-123"]
    assert sorted(os.listdir(d)) == ["plan.json", "shards"]
    assert os.listdir(os.path.join(d, writer.SHARDS)) == ["00000"]
    assert verify.remove_temporaries(d) == []


@pytest.mark.parametrize("damage_it, name", [
    (lambda s: truncate(f"{s}/latents.npy"), "latents.npy"),
    (lambda s: truncate(f"{s}/records.jsonl", 0), "records.jsonl"),
    (lambda s: os.remove(f"{s}/u00001-i000-v00.png"), "u00001-i000-v00.png"),
])
def test_the_reader_checks_sizes_on_open_and_names_the_file(tmp_path, damage_it, name):
    d = dataset(tmp_path)
    assert len(list(Dataset.open(d).records())) == 6
    damage_it(shard(d, 1))
    with pytest.raises(DatasetError, match=f"{shard(d, 1)}/{name}: "):
        Dataset.open(d)


def test_a_corrupt_png_is_named_by_the_reader(tmp_path):
    d = dataset(tmp_path, (0,))
    path = os.path.join(shard(d, 0), "u00000-i000-v00.png")
    size = os.path.getsize(path)
    Path(path).write_bytes(b"\0" * size)  # same size: only the checksum would notice
    ds = Dataset.open(d)
    with pytest.raises(DatasetError, match=f"{path}: cannot decode image"):
        ds.load_image(next(ds.records()))


@pytest.mark.parametrize("text", ["{\"format\": ", "[1, 2]", "\xff\xfe"])
def test_a_corrupt_plan_json_is_named(tmp_path, text):
    d = str(tmp_path / "ds")
    head = {"format": fmt.FORMAT, "config": {"a": 1}}
    manifest.prepare(d, head, overwrite=False)
    path = os.path.join(d, "plan.json")
    Path(path).write_text(text, encoding="latin-1")
    with pytest.raises(manifest.PlanMismatch, match=f"{path}: unreadable.*--overwrite"):
        manifest.prepare(d, head, overwrite=False)
    manifest.prepare(d, head, overwrite=True)
    with open(path) as f:
        assert json.load(f)["config"] == {"a": 1}


def test_a_directory_holding_only_the_lock_counts_as_empty(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    (d / LOCK).write_text("pid 1 on host h")
    manifest.prepare(str(d), {"format": fmt.FORMAT}, overwrite=False)
    assert sorted(os.listdir(d)) == [LOCK, "plan.json"]
