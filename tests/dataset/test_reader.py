"""The dataset reader on hand-written directories (no models)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from jaxfair.dataset.reader import Dataset, DatasetError

SCHEMA = {"tone": ["light", "medium", "dark"], "hair": ["short", "long"]}


def record(unit, row, group="tone=dark", variation=0):
    rid = f"u{unit:05d}-i{row:03d}-v{variation:02d}"
    return {"id": rid, "identity": rid[:-4], "group": group, "variation": variation,
            "file": None, "latent_row": row, "unit": unit, "seed": 1, "search": 0,
            "attributes": {"tone": {"class": "dark", "prob": 0.9},
                           "hair": {"class": "long", "prob": 0.8}},
            "target_probs": {"tone": 0.9}}


def write(root, units, done=None, manifest=None, plan_extra=None):
    """units: {unit: n records}; done: units that get a DONE (default all)."""
    os.makedirs(os.path.join(root, "shards", ".tmp-00007"), exist_ok=True)
    plan = {"format": "jaxfair-dataset/1", "method": "search", "attributes": ["tone"],
            "schema": SCHEMA, "groups": {"tone=dark": 4}, "variations": 0,
            "image_format": "none", "latent_space": "w", "units": len(units),
            **(plan_extra or {})}
    with open(os.path.join(root, "plan.json"), "w") as f:
        json.dump(plan, f)
    for u, n in units.items():
        d = os.path.join(root, "shards", f"{u:05d}")
        os.makedirs(d)
        with open(os.path.join(d, "records.jsonl"), "w") as f:
            f.writelines(json.dumps(record(u, i)) + "\n" for i in range(n))
        # Row i of unit u holds the value 10 u + i, so any mix-up shows.
        np.save(os.path.join(d, "latents.npy"),
                (10 * u + np.arange(n, dtype=np.float16))[:, None] * np.ones((1, 3), np.float16))
        if done is None or u in done:
            with open(os.path.join(d, "DONE"), "w") as f:
                json.dump({"unit": u, "records": n, "seconds": 1.0}, f)
    if manifest is not None:
        with open(os.path.join(root, "manifest.json"), "w") as f:
            json.dump({**plan, "complete": True, **manifest}, f)


def test_reads_done_shards_skips_excluded_and_temporary(tmp_path):
    write(tmp_path, {0: 2, 1: 3, 2: 2}, done={0, 2},
          manifest={"excluded": ["u00002-i001-v00"]})
    ds = Dataset.open(str(tmp_path))
    assert ds.complete and [s.unit for s in ds.shards] == [0, 2]
    ids = [r["id"] for r in ds.records()]
    assert ids == ["u00000-i000-v00", "u00000-i001-v00", "u00002-i000-v00"]
    lat = ds.latents(list(reversed(list(ds.records()))))
    assert lat.dtype == np.float32 and lat.shape == (3, 3)
    np.testing.assert_array_equal(lat[:, 0], [20, 1, 0])
    assert ds.groups == {"tone=dark": 4}
    assert np.asarray(ds.target("tone=dark").masks["tone"]).tolist() == [False, False, True]
    assert ds.image_path(next(ds.records())) is None
    with pytest.raises(DatasetError, match="no image file"):
        ds.load_image(next(ds.records()))


def test_partial_dataset_without_manifest(tmp_path):
    write(tmp_path, {0: 2, 1: 1}, done={1})
    ds = Dataset.open(str(tmp_path))
    assert not ds.complete and ds.manifest is None and ds.excluded == frozenset()
    assert [r["id"] for r in ds.records()] == ["u00001-i000-v00"]


@pytest.mark.parametrize("setup,match", [
    (lambda p: None, "no plan.json"),
    (lambda p: Path(p, "plan.json").write_text("{"), "not valid JSON"),
    (lambda p: write(p, {}, plan_extra={"format": "other/2"}), "is not 'jaxfair-dataset/1'"),
])
def test_not_a_dataset(tmp_path, setup, match):
    setup(str(tmp_path))
    with pytest.raises(DatasetError, match=match):
        Dataset.open(str(tmp_path))
    with pytest.raises(DatasetError, match="no such directory"):
        Dataset.open(str(tmp_path / "absent"))


def test_shard_disagreeing_with_its_done_marker(tmp_path):
    write(tmp_path, {0: 2})
    with open(tmp_path / "shards" / "00000" / "DONE", "w") as f:
        json.dump({"unit": 0, "records": 3}, f)
    ds = Dataset.open(str(tmp_path))
    with pytest.raises(DatasetError, match="2 records but DONE says 3"):
        list(ds.records())
    with open(tmp_path / "shards" / "00000" / "DONE", "w") as f:
        json.dump({"unit": 5, "records": 2}, f)
    with pytest.raises(DatasetError, match="expected"):
        Dataset.open(str(tmp_path))
