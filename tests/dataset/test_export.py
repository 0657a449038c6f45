"""Exports read back by the real readers: webdataset, array_record + grain, pyarrow,
an independent RecordIO parser, torchvision-ImageFolder semantics."""

import glob
import io
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from report.dataset_writer import DEMO, ROOT, write_dataset

import jaxfair
from jaxfair.dataset.export import ExportError, arrayrecord, common, export, recordio
from jaxfair.dataset.reader import Dataset
from jaxfair.judge import crops

GROUPS = ["tone=light,hair=short", "tone=light,hair=long", "tone=medium,hair=short"]
VAL = 0.4  # enough validation identities among 12 for every kind of pair
SHARD = 20_000  # bytes: several shards from a small dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 groups x 4 identities x 3 images (PNG); one extra identity excluded."""
    root = str(tmp_path_factory.mktemp("ds"))
    G = jaxfair.load_generator(os.path.join(DEMO, "generator"))
    C = jaxfair.load_classifier(os.path.join(DEMO, "classifier"))
    write_dataset(root, G, C, GROUPS, 4, variations=2, excluded_in=GROUPS[2])
    ds = Dataset.open(root)
    recs = list(ds.records())
    ids = sorted({r["identity"] for r in recs})
    with_bytes = {}
    for r in recs:
        with open(ds.image_path(r), "rb") as f:
            with_bytes[r["id"]] = f.read()
    return {"root": root, "records": {r["id"]: r for r in recs}, "bytes": with_bytes,
            "index": {i: k for k, i in enumerate(ids)}}


@pytest.fixture(scope="module")
def exported(dataset, tmp_path_factory):
    out = {}
    for fmt in ("webdataset", "arrayrecord", "recordio"):
        path = str(tmp_path_factory.mktemp(fmt) / "out")
        out[fmt] = (path, export(dataset["root"], fmt, path, val_fraction=VAL,
                                 shard_bytes=SHARD, log=lambda m: None))
    return out


def _check_meta(meta, dataset):
    r = dataset["records"][meta["key"]]
    assert meta["identity"] == r["identity"] and meta["group"] == r["group"]
    assert meta["identity_index"] == dataset["index"][r["identity"]]
    assert meta["group_index"] == GROUPS.index(r["group"])
    assert meta["attributes"] == r["attributes"] and meta["latent_row"] == r["latent_row"]
    assert meta["split"] == common.split_of(r["identity"], VAL)


def test_webdataset(dataset, exported):
    import webdataset as wds

    path, summary = exported["webdataset"]
    shards = sorted(glob.glob(os.path.join(path, "shard-*.tar")))
    assert len(shards) == summary["shards"] > 1
    seen = []
    for s in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
        meta = json.loads(s["json"])
        assert s["__key__"] == meta["key"]
        assert s["png"] == dataset["bytes"][meta["key"]]  # the dataset's own file
        _check_meta(meta, dataset)
        seen.append(meta["key"])
    assert sorted(seen) == sorted(dataset["records"]) and len(seen) == 36
    # Identities contiguous, in index order within each unit.
    idx = [dataset["index"][dataset["records"][k]["identity"]] for k in seen]
    assert idx == sorted(idx)


def test_arrayrecord_and_grain(dataset, exported):
    from array_record.python.array_record_module import ArrayRecordReader

    path, summary = exported["arrayrecord"]
    files = sorted(glob.glob(os.path.join(path, "*.array_record")))
    assert len(files) == summary["files"] > 1
    seen = {}
    for fname in files:
        reader = ArrayRecordReader(fname)
        for i, rec in enumerate(reader.read_all()):
            meta, img = arrayrecord.decode(rec)
            assert img == dataset["bytes"][meta["key"]]
            _check_meta(meta, dataset)
            seen[meta["key"]] = f"{os.path.basename(fname)}:{i}"
        reader.close()
    assert sorted(seen) == sorted(dataset["records"])
    grain = pytest.importorskip("grain.python")
    source = grain.ArrayRecordDataSource(files)
    assert len(source) == 36
    meta, img = arrayrecord.decode(source[17])  # random access
    assert img == dataset["bytes"][meta["key"]]
    # The index's location names the file and record of every key.
    rows = pq.read_table(os.path.join(path, common.INDEX)).to_pylist()
    assert {r["key"]: r["location"] for r in rows} == seen


def _read_record(f, offset):
    """dmlc RecordIO: magic, lrecord (cflag << 29 | len), data, pad to 4; parts rejoined
    with the magic between them (independent of the writer)."""
    f.seek(offset)
    data = b""
    while True:
        magic, lrec = struct.unpack("<II", f.read(8))
        assert magic == 0xCED7230A
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        data += f.read(length)
        f.read((4 - length % 4) % 4)
        if cflag in (0, 3):
            return data
        data += struct.pack("<I", 0xCED7230A)


def _unpack(payload):
    flag, label, rec_id, _ = struct.unpack("<IfQQ", payload[:24])
    labels = np.frombuffer(payload[24:24 + 4 * flag], "<f4") if flag else None
    return flag, label, rec_id, labels, payload[24 + 4 * flag:]


def test_recordio(dataset, exported):
    path, summary = exported["recordio"]
    with open(os.path.join(path, "property")) as f:
        assert f.read().strip() == f"{len(dataset['index'])},64,64"
    total = 0
    for split in summary["splits"]:
        with open(os.path.join(path, f"{split}.idx")) as f:
            offsets = {int(k): int(v) for k, v in (line.split("\t") for line in f)}
        with open(os.path.join(path, f"{split}.rec"), "rb") as f:
            flag, _, _, head, _ = _unpack(_read_record(f, offsets[0]))
            n, end = int(head[0]) - 1, int(head[1])
            assert flag == 2 and sorted(offsets) == list(range(end))
            labels = []
            for i in range(1, n + 1):  # what arcface_torch's MXFaceDataset reads
                flag, label, rec_id, _, img = _unpack(_read_record(f, offsets[i]))
                arr = np.asarray(Image.open(io.BytesIO(img)))
                key = next(k for k, b in dataset["bytes"].items() if b == img)
                assert flag == 0 and rec_id == i and arr.shape == (64, 64, 3)
                r = dataset["records"][key]
                assert label == dataset["index"][r["identity"]]
                assert common.split_of(r["identity"], VAL) == split
                labels.append(label)
            for k in range(n + 1, end):  # identity records: contiguous ranges
                flag, _, _, rng, _ = _unpack(_read_record(f, offsets[k]))
                a, b = int(rng[0]), int(rng[1])
                assert flag == 2 and len(set(labels[a - 1:b - 1])) == 1
        total += n
    assert total == 36


def test_recordio_frame_splits_payloads_holding_the_magic():
    magic = struct.pack("<I", 0xCED7230A)
    payload = b"abcd" + magic + b"12345678" + magic + magic + b"xyz"
    framed = recordio.frame(payload)
    assert len(framed) % 4 == 0
    assert _read_record(io.BytesIO(framed), 0) == payload
    assert _read_record(io.BytesIO(recordio.frame(b"ab")), 0) == b"ab"


def test_imagefolder_cli_and_torchvision_semantics(dataset, tmp_path):
    out = str(tmp_path / "if")
    res = subprocess.run([sys.executable, "-m", "jaxfair.export", f"--dataset={dataset['root']}",
                          "--format=imagefolder", f"--out={out}", f"--val_fraction={VAL}"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "wrote 36 images of 12 identities" in res.stdout
    # torchvision.datasets.ImageFolder: classes = sorted sub-directories, index = position.
    classes = sorted(e.name for e in os.scandir(out) if e.is_dir())
    assert classes == sorted(dataset["index"])
    meta = {}
    with open(os.path.join(out, "metadata.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            meta[m["file_name"]] = m
    n = 0
    for ci, c in enumerate(classes):
        for name in sorted(os.listdir(os.path.join(out, c))):
            rel = f"{c}/{name}"
            with open(os.path.join(out, rel), "rb") as f:
                assert f.read() == dataset["bytes"][meta[rel]["key"]]
            assert meta[rel]["identity_index"] == ci and meta[rel]["group"] in GROUPS
            _check_meta(meta[rel], dataset)
            n += 1
    assert n == len(meta) == 36


def test_index_split_and_pairs(dataset, exported):
    path, summary = exported["webdataset"]
    t = pq.read_table(os.path.join(path, common.INDEX))
    rows = t.to_pylist()
    assert len(rows) == 36 and {"class_tone", "prob_hair", "target_tone"} <= set(t.column_names)
    for r in rows:
        rec = dataset["records"][r["key"]]
        assert r["class_tone"] == rec["attributes"]["tone"]["class"]
        assert r["target_hair"] == pytest.approx(rec["target_probs"]["hair"])
        assert r["image_bytes"] == len(dataset["bytes"][r["key"]])
    split = {}
    for r in rows:
        assert split.setdefault(r["identity"], r["split"]) == r["split"]  # identity-disjoint
    val = {i for i, s in split.items() if s == "val"}
    assert 0 < len(val) < len(split) and summary["val_identities"] == len(val)
    pairs = pq.read_table(os.path.join(path, common.PAIRS)).to_pylist()
    kinds = {p["kind"] for p in pairs}
    assert kinds == {"same", "different_within_group", "different_across_groups"}
    by_key = {r["key"]: r for r in rows}
    for p in pairs:
        a, b = by_key[p["key_a"]], by_key[p["key_b"]]
        assert a["split"] == b["split"] == "val" and p["same"] == (a["identity"] ==
                                                                   b["identity"])
        assert (p["kind"] == "different_across_groups") == (a["group"] != b["group"])
    # Same for every format and every run (deterministic).
    again = pq.read_table(os.path.join(exported["recordio"][0], common.PAIRS)).to_pylist()
    assert again == pairs


def test_arcface_crop_export(dataset, tmp_path):
    out = str(tmp_path / "crop")
    export(dataset["root"], "arrayrecord", out, crop="arcface112", image_format="png",
           log=lambda m: None, batch=16)
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(glob.glob(os.path.join(out, "*.array_record"))[0])
    recs = reader.read_all()
    reader.close()
    assert len(recs) == 36
    for rec in recs[:20:7]:
        meta, img = arrayrecord.decode(rec)
        got = np.asarray(Image.open(io.BytesIO(img)))
        src = np.asarray(Image.open(io.BytesIO(dataset["bytes"][meta["key"]])))
        want = np.asarray(crops.arcface112(src[None]))[0]
        assert got.shape == (112, 112, 3)
        assert np.abs(got.astype(int) - want).max() <= 1  # same crop (batching rounding)


def test_refusals_leave_nothing(dataset, exported, tmp_path, monkeypatch):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep")
    with pytest.raises(ExportError, match="not empty"):
        export(dataset["root"], "webdataset", str(busy))
    assert os.listdir(busy) == ["x"]
    with pytest.raises(ExportError, match="unknown format"):
        export(dataset["root"], "tfrecord", str(tmp_path / "a"))
    cropped = tmp_path / "cropped"
    shutil.copytree(dataset["root"], cropped)
    plan = json.loads((cropped / "plan.json").read_text())
    plan["config"]["crop"] = "arcface112"
    (cropped / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ExportError, match="already cropped"):
        export(str(cropped), "webdataset", str(tmp_path / "c"), crop="arcface112")
    shutil.rmtree(cropped)
    # A failure half-way writes no OUT and keeps the finished parts for the same command.
    from jaxfair.dataset.export import webdataset as wds_export

    calls = []
    write = wds_export.Writer.write

    def boom(self, s):
        calls.append(s)
        if len(calls) > 20:
            raise OSError("disk full")
        return write(self, s)

    monkeypatch.setattr(wds_export.Writer, "write", boom)
    with pytest.raises(OSError, match="disk full"):
        export(dataset["root"], "webdataset", str(tmp_path / "b"), val_fraction=VAL,
               shard_bytes=SHARD, log=lambda m: None)
    assert sorted(os.listdir(tmp_path)) == ["b.partial", "busy"]
    # The same partial export with other arguments: refused, left as it is.
    before = _tree(str(tmp_path / "b.partial"))
    with pytest.raises(ExportError, match=r"other arguments .*shard_bytes: 20000 -> 30000"):
        export(dataset["root"], "webdataset", str(tmp_path / "b"), val_fraction=VAL,
               shard_bytes=30_000)
    with pytest.raises(ExportError, match=r"format: 'webdataset' -> 'arrayrecord'"):
        export(dataset["root"], "arrayrecord", str(tmp_path / "b"), val_fraction=VAL,
               shard_bytes=SHARD)
    assert _tree(str(tmp_path / "b.partial")) == before
    monkeypatch.undo()
    s = export(dataset["root"], "webdataset", str(tmp_path / "b"), val_fraction=VAL,
               shard_bytes=SHARD, log=lambda m: None)
    assert s["resumed_parts"] >= 1 and sorted(os.listdir(tmp_path)) == ["b", "busy"]
    assert _tree(str(tmp_path / "b")) == _tree(exported["webdataset"][0])
    # Done already: the same command changes nothing; other arguments are refused.
    again = export(dataset["root"], "webdataset", str(tmp_path / "b"), val_fraction=VAL,
                   shard_bytes=SHARD, log=lambda m: None)
    assert again["images"] == 36 and again["seconds"] == 0.0
    with pytest.raises(ExportError, match="not empty"):
        export(dataset["root"], "webdataset", str(tmp_path / "b"), val_fraction=0.2)


def _tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                out[os.path.relpath(os.path.join(d, f), root)] = fh.read()
    return out


# Run in a subprocess: the export kills itself (SIGKILL, no cleanup of any kind) at a
# chosen point: after the n-th sample's index row (mid-part), after the n-th committed
# part, or while merging the index once every part is done.
_KILLER = """
import os, signal, sys
from jaxfair.dataset.export import common, export, parts
root, fmt, out, where, n, val, shard = sys.argv[1:8]
seen = []
def hook(orig):
    def f(*a, **k):
        r = orig(*a, **k)
        seen.append(1)
        if len(seen) == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
        return r
    return f
if where == "sample":
    common.IndexWriter.add = hook(common.IndexWriter.add)
elif where == "commit":
    parts.Partial.commit = hook(parts.Partial.commit)
else:
    def merge(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    common.merge_index = merge
export(root, fmt, out, val_fraction=float(val), shard_bytes=int(shard), log=lambda m: None)
"""


@pytest.mark.parametrize("fmt,where,n", [("webdataset", "sample", 28),
                                         ("arrayrecord", "finish", 0),
                                         ("recordio", "sample", 17),
                                         ("imagefolder", "commit", 3)])
def test_killed_export_resumes_byte_identical(dataset, exported, tmp_path, fmt, where, n):
    out = str(tmp_path / "out")
    res = subprocess.run([sys.executable, "-c", _KILLER, dataset["root"], fmt, out, where,
                          str(n), str(VAL), str(SHARD)], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == -9, res.stderr
    partial = out + ".partial"
    assert not os.path.exists(out) and os.path.isdir(partial)
    with open(os.path.join(partial, ".progress.jsonl")) as f:
        finished = len(f.readlines()) - 1
    assert finished >= 2
    logs = []
    if fmt == "webdataset":  # a finished part damaged after the kill: redone from there
        with open(os.path.join(partial, "shard-000001.tar"), "r+b") as f:
            f.seek(600)
            byte = f.read(1)
            f.seek(600)
            f.write(bytes([byte[0] ^ 1]))
    if fmt == "recordio":  # a progress line torn by the kill is ignored
        with open(os.path.join(partial, ".progress.jsonl"), "a") as f:
            f.write('{"part": 99, "end"')
    s = export(dataset["root"], fmt, out, val_fraction=VAL, shard_bytes=SHARD, log=logs.append)
    assert not os.path.exists(partial) and s["images"] == 36
    if fmt == "webdataset":
        assert s["resumed_parts"] == 1 and "part 1 damaged" in logs[0]
    else:
        assert s["resumed_parts"] == finished
    if fmt in exported:
        clean = exported[fmt][0]
    else:
        clean = str(tmp_path / "clean")
        export(dataset["root"], fmt, clean, val_fraction=VAL, shard_bytes=SHARD,
               log=lambda m: None)
    got, want = _tree(out), _tree(clean)
    assert sorted(got) == sorted(want) and len(want) > 5
    assert got == want  # every file byte for byte


def test_resumed_sample_stream_equals_the_tail(dataset):
    """Skipping samples (resume) must not change the ones after: same crop batches."""
    ds = Dataset.open(dataset["root"])
    s = common.survey(ds, VAL)
    full = [(x.key, x.image) for x in common.samples(ds, s, "arcface112", "png", batch=4)]
    assert len(full) == 36
    for start in (5, 14):
        tail = [(x.key, x.image) for x in common.samples(ds, s, "arcface112", "png", batch=4,
                                                          start=start)]
        assert tail == full[start:]


def _interrupt_after(monkeypatch, rows: int) -> None:
    """The next export stops (KeyboardInterrupt) when its index would take row ``rows + 1``."""
    add = common.IndexWriter.add
    seen = []

    def stop(self, sample, location):
        seen.append(1)
        if len(seen) > rows:
            raise KeyboardInterrupt
        add(self, sample, location)

    monkeypatch.setattr(common.IndexWriter, "add", stop)


def test_cli_bad_input_one_line(dataset, tmp_path, monkeypatch):
    (tmp_path / "x").write_text("1")
    cmd = [sys.executable, "-m", "jaxfair.export", f"--dataset={dataset['root']}"]
    res = subprocess.run(cmd + ["--format=webdataset", f"--out={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "exists and is not empty" in res.stderr
    # A partial export (stopped after its first part), then the command with other arguments.
    _interrupt_after(monkeypatch, 12)
    out = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        export(dataset["root"], "recordio", str(out), shard_bytes=SHARD, log=lambda m: None)
    before = _tree(str(tmp_path / "p.partial"))
    assert ".progress.jsonl" in before and not out.exists()
    res = subprocess.run(cmd + ["--format=recordio", f"--out={out}", "--crop=arcface112",
                                f"--shard_bytes={SHARD}"], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "partial export of other arguments" in res.stderr and "crop: 'none'" in res.stderr
    assert _tree(str(tmp_path / "p.partial")) == before and not out.exists()


def test_second_export_on_a_running_partial_is_refused(dataset, tmp_path):
    from jaxfair.dataset import lock as lock_lib

    out = str(tmp_path / "o")
    # As a running export holds it:
    with lock_lib.hold(out + ".partial"), pytest.raises(lock_lib.WorkdirBusy, match="in use"):
        export(dataset["root"], "arrayrecord", out, log=lambda m: None)
    assert not os.path.exists(out)


def test_restart_replaces_a_stale_export(dataset, exported, tmp_path, monkeypatch):
    """stale='restart' (the main job's own export): an export of other arguments, finished
    or partial, is removed and the export made anew."""
    out = str(tmp_path / "o")
    export(dataset["root"], "arrayrecord", out, val_fraction=VAL, log=lambda m: None)
    export(dataset["root"], "arrayrecord", out, val_fraction=VAL, shard_bytes=SHARD,
           stale="restart", log=lambda m: None)
    assert _tree(out) == _tree(exported["arrayrecord"][0])
    _interrupt_after(monkeypatch, 12)
    out = str(tmp_path / "r")
    with pytest.raises(KeyboardInterrupt):
        export(dataset["root"], "recordio", out, val_fraction=VAL, shard_bytes=10_000,
               log=lambda m: None)
    monkeypatch.undo()
    s = export(dataset["root"], "recordio", out, val_fraction=VAL, shard_bytes=SHARD,
               stale="restart", log=lambda m: None)
    assert s["resumed_parts"] == 0 and not os.path.exists(out + ".partial")
    assert _tree(out) == _tree(exported["recordio"][0])
