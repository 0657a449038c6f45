"""Dataset report: ``DIR/report/`` for a generated dataset (complete or partial).

Sections (all in ``report.json``, figures as PNG files, everything inline in ``index.html``):
  counts       identities and images per group vs. quota (and the manifest's counts)
  agreement    a sample of identity images per group, decoded from disk and classified
               again: agreement with the stored classes, share still in the group
  target probs distribution of the stored target-class probability, per group
  non-target   how each group splits over the attributes it does not constrain (balance on
               one attribute must not hide a skew on another)
  sheets       a contact sheet of sampled identities per group (``sheets/<group>.png``)
  diversity    per group, pairwise and nearest-neighbour distances of latents and of
               classifier features (jaxfair.report.diversity; not an identity measure)
  reference    faithfulness without ground truth, any generator: each group against an
               equal-size unguided sample of it (jaxfair.report.reference)
  faithfulness the demo world's exact check: KS ratio and ground truth
               (jaxfair.report.faithfulness; demo-generator datasets that kept z)

HTML of each section: jaxfair.report.sections.

Identity figures use each identity's own image (variation 0); image counts and target
probabilities use every image. ``rc`` is ``config.report`` (configs/demo.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxfair.dataset import format as fmt
from jaxfair.dataset.reader import Dataset, DatasetError
from jaxfair.io import images as imlib
from jaxfair.judge import render, sizing
from jaxfair.judge.classifier import Classifier
from jaxfair.models import stylegan2 as sg
from jaxfair.report import dataset_stats as figures
from jaxfair.report import faithfulness as faith
from jaxfair.report import html as H
from jaxfair.report import plots, reclassify, reference
from jaxfair.report import sections as S

REPORT_JSON = "report.json"

# An embedding model: generator-range images [N, H, W, 3] in [-1, 1] -> vectors [N, F].
Embedder = Callable[[np.ndarray], np.ndarray]


def sheet_name(group: str) -> str:
    """File-name-safe group text (``dataset.format.slug``, other odd characters -> '-')."""
    return re.sub(r"[^A-Za-z0-9=_.+-]", "-", fmt.slug(group))


def check_schema(ds: Dataset, C: Classifier) -> None:
    """Raises DatasetError unless the classifier has the dataset's attributes and classes."""
    mine = {a.name: a.classes for a in ds.schema.attributes}
    theirs = {a.name: a.classes for a in C.schema.attributes}
    if mine != theirs:
        raise DatasetError(f"classifier schema {theirs} differs from the dataset's {mine}")


def synthesis_factory(G: sg.Generator, noise_mode: str):
    """``batch -> (jitted (g_state, ws [batch, num_ws, w_dim] float32) -> images, abstract
    arguments)`` for ``sizing.size_step``: the synthesis of ``G.synthesis`` (float32)."""
    fn = jax.jit(lambda g_state, ws: sg.synthesis(G.graphdef, g_state, ws, noise_mode))

    def factory(b: int):
        return fn, (sizing.abstract(G.state), jax.ShapeDtypeStruct(
            (b, G.config.num_ws, G.config.w_dim), jnp.float32))

    return factory


def load_images(ds: Dataset, records: list[dict], G: sg.Generator | None,
                batch_size: int, steps: sizing.Steps | None = None) -> np.ndarray:
    """uint8 images [N, H, W, 3] of ``records``: decoded files, or renders of the latents.

    Without image files (image_format 'none') the stored latents are rendered with ``G``
    (W latents are broadcast to every layer) using the run's noise mode, ``batch_size`` at
    a time or the largest size below it within ``steps``'s budget (step 'render').
    """
    if ds.plan["image_format"] != "none":
        return np.stack([ds.load_image(r) for r in records])
    if G is None:
        raise DatasetError(f"{ds.path} has no image files (image_format none): a generator "
                           "is needed to render its latents")
    lat = ds.latents(records)
    if lat.ndim == 2:
        lat = np.broadcast_to(lat[:, None], (len(lat), G.config.num_ws, lat.shape[-1]))
    noise_mode = ds.plan.get("config", {}).get("noise_mode", "const")
    step, batch = (steps or sizing.Steps(None)).step(synthesis_factory(G, noise_mode),
                                                      batch_size, "render")
    return render.batched(
        lambda ws: imlib.to_uint8(step(G.state, np.asarray(ws, np.float32))),
        np.ascontiguousarray(lat), batch)


def thumbnails(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> [N, s, s, 3] with s = min(H, size) (antialiased downscale)."""
    from PIL import Image

    if images.shape[1] <= size:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.LANCZOS))
                     for im in images])


def _json_safe(x):
    """NaN/inf -> None (strict JSON), recursively."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def build(ds: Dataset, C: Classifier, rc, G: sg.Generator | None = None,
          embedders: Mapping[str, Embedder] | None = None,
          log: Callable[[str], None] = print, budget_bytes: int | None = None
          ) -> tuple[dict, dict[str, bytes]]:
    """Computes every section of the report.

    Args:
      ds: the opened dataset.
      C: the classifier (its schema must equal the dataset's).
      rc: report settings (``config.report``): sample_per_group, sheet_size, sheet_cols,
        thumb_size, diversity_max, near_duplicate_fraction, batch_size, seed,
        reference_size, reference_budget, reference_permutations.
      G: generator, needed for datasets without image files and for the unguided
        reference (without it, that section says it was skipped).
      embedders: optional extra embedding spaces {name: images [-1, 1] -> [N, F]} (a
        face-recognition model, once converted), compared by cosine distance.
      budget_bytes: memory budget of one call of a batched step (the re-render, the
        re-classification and features, the reference draw and its features): each runs
        the largest batch within it, ``rc.batch_size`` at most (``sizing.Steps``, logged;
        ``report['batch_sizes']`` lists those below it). None: ``rc.batch_size``.

    Returns:
      (report dict as written to report.json, {relative file name: bytes}) including
      index.html.
    """
    check_schema(ds, C)
    steps = sizing.Steps(budget_bytes, log)
    records = list(ds.records())
    groups = figures.by_group(ds, records)
    plan = ds.plan
    report = {
        "dataset": os.path.abspath(ds.path), "format": plan["format"],
        "method": plan["method"], "complete": ds.complete,
        "units_planned": plan.get("units"), "units_finished": len(ds.shards),
        "images": len(records), "identities": len({r["identity"] for r in records}),
        "excluded_records": len(ds.excluded), "variations": plan["variations"],
        "image_format": plan["image_format"], "latent_space": plan["latent_space"],
        "attributes": list(plan["attributes"]), "checkpoints": plan.get("checkpoints"),
        "settings": rc.to_dict(),
    }
    files: dict[str, bytes] = {}
    state = "complete" if ds.complete else "partial (no manifest yet)" if ds.manifest is None \
        else "manifest present but not complete"
    sections = [H.Section("Overview", [H.Table(["", "value"], [
        ["dataset", report["dataset"]], ["state", state], ["method", plan["method"]],
        ["work units finished / planned", f"{len(ds.shards)} / {plan.get('units', '?')}"],
        ["identities / images", f"{report['identities']} / {report['images']}"],
        ["excluded records (near-duplicates)", report["excluded_records"]],
        ["groups", f"{len(ds.groups)} ({' x '.join(plan['attributes'])})"],
        ["image format / latent space", f"{plan['image_format']} / {plan['latent_space']}"],
    ])])]

    # Counts --------------------------------------------------------------------------------
    report["counts"] = figures.counts(ds, groups)
    rows = [[g, c["quota"] if c["quota"] is not None else "unplanned", c["identities"],
             c["images"]] + ([("yes" if c["matches_manifest"] else "NO")]
                             if ds.manifest is not None else [])
            for g, c in report["counts"].items()]
    header = ["group", "quota", "identities", "images"] + \
        (["matches manifest"] if ds.manifest is not None else [])
    files["counts.png"] = plots.counts_vs_quota(
        list(groups), [c["identities"] for c in report["counts"].values()],
        [c["quota"] or 0 for c in report["counts"].values()],
        f"Identities per group vs. quota ({state})")
    sections.append(H.Section("Counts per group", [
        H.Table(header, rows), H.Image(files["counts.png"], "identities per group vs quota")]))

    # Sample read back from disk: agreement, contact sheets, feature diversity -------------
    sample = figures.sample_identities(groups, rc.sample_per_group, rc.seed)
    flat = [r for recs in sample.values() for r in recs]
    images: dict[str, np.ndarray] = {}
    feats: dict[str, dict[str, np.ndarray]] = {"classifier features": {}}
    extra = dict(embedders or {})
    for name in extra:
        feats[name] = {}
    if flat:
        log(f"reading back and classifying {len(flat)} identity images")
        imgs = load_images(ds, flat, G, rc.batch_size, steps)
        probs = reclassify.predict(C, imgs, rc.batch_size, steps)
        report["agreement"] = reclassify.agreement(flat, probs, ds.schema)
        f_cls = reclassify.features(C, imgs, rc.batch_size, steps)
        f_extra = {name: np.asarray(fn(reclassify.from_uint8(imgs))) for name, fn in
                   extra.items()}
        start = 0
        for g, recs in sample.items():
            sl = slice(start, start + len(recs))
            images[g] = imgs[sl]
            feats["classifier features"][g] = f_cls[sl]
            for name in extra:
                feats[name][g] = f_extra[name][sl]
            start += len(recs)
        sections.append(S.agreement(report["agreement"], files,
                                           plan["image_format"]))

    # Target probabilities -------------------------------------------------------------------
    report["target_probs"] = figures.target_probs(ds, groups)
    sections.append(S.target_probs(report["target_probs"], groups, files))

    # Non-target attributes ----------------------------------------------------------------
    report["non_target"] = figures.non_target(ds, groups)
    sections.append(S.non_target(report["non_target"], ds.schema, files))

    # Contact sheets -------------------------------------------------------------------------
    blocks: list = [H.Text(f"Up to {rc.sheet_size} sampled identities per group (own image, "
                           "variation 0), in record order.")]
    for g, im in images.items():
        if not len(im):
            continue
        thumbs = thumbnails(im[:rc.sheet_size], rc.thumb_size)
        sheet = imlib.contact_sheet(thumbs, cols=min(rc.sheet_cols, len(thumbs)))
        files[f"sheets/{sheet_name(g)}.png"] = imlib.encode(sheet, "png")
        # JPEG inline keeps index.html small for photographic sheets; the PNG is on disk.
        blocks.append(H.Image(imlib.encode(sheet, "jpg", 90), f"{g}: {len(thumbs)} identities",
                              "image/jpeg"))
    sections.append(H.Section("Contact sheets", blocks))

    # Diversity --------------------------------------------------------------------------------
    own = {g: [r for r in recs if r["variation"] == 0] for g, recs in groups.items()}
    latents = {g: ds.latents(recs) for g, recs in own.items() if recs}
    spaces = {f"latent ({plan['latent_space']})": ("rms", latents)}
    spaces.update({name: ("cosine", v) for name, v in feats.items()})
    report["diversity"], nn = figures.diversity_section(spaces, rc.near_duplicate_fraction,
                                                rc.diversity_max, rc.seed)
    sections.append(S.diversity(report["diversity"], nn, files))

    # Faithfulness: against an unguided sample (any generator); demo world: exact factors --
    report["unguided_reference"] = (
        reference.check(ds, own, G, C, rc, log, steps)
        if G is not None or rc.reference_size == 0 else {"skipped": "no generator loaded"})
    sections.append(S.unguided_reference(report["unguided_reference"]))
    if faith.demo_world(ds):
        report["faithfulness"] = faith.demo_groups(ds, own)
        sections.append(S.demo_faithfulness(report["faithfulness"]))
    if steps.reduced():  # a step ran below rc.batch_size (the memory budget)
        report["batch_sizes"] = steps.reduced()

    report = _json_safe(report)
    files[REPORT_JSON] = json.dumps(report, indent=2).encode()
    files["index.html"] = H.page(f"Dataset report: {os.path.basename(report['dataset'])}",
                                 sections).encode()
    return report, files


def check_out(out: str) -> None:
    """Raises FileExistsError unless ``out`` is absent, empty, or an earlier report."""
    if os.path.exists(out) and not (os.path.isdir(out) and (
            not os.listdir(out) or os.path.isfile(os.path.join(out, REPORT_JSON)))):
        raise FileExistsError(f"{out} exists and is not a jaxfair report; choose another "
                              "--out")


def write(out: str, files: Mapping[str, bytes]) -> None:
    """Writes ``files`` as directory ``out``, replacing an earlier report there atomically.

    Raises:
      FileExistsError: ``out`` exists and is neither empty nor a report (no report.json).
    """
    out = os.path.abspath(out)
    check_out(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    old = tmp + ".old"
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a report is meant to be shared
        for name, data in files.items():
            path = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        if os.path.exists(out):
            os.rename(out, old)  # the previous report stays whole until the new one is in
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.exists(old) and not os.path.exists(out):
            os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def validate(rc) -> None:
    """Raises ValueError naming the first bad ``config.report`` setting."""
    for name in ("sample_per_group", "sheet_size", "sheet_cols", "thumb_size",
                 "diversity_max", "batch_size", "reference_budget"):
        if rc[name] < 1:
            raise ValueError(f"report.{name} must be >= 1, got {rc[name]}")
    if rc.reference_size < 0 or rc.reference_size in (1, 2):
        raise ValueError(f"report.reference_size must be 0 (no check) or >= "
                         f"{reference.MIN_SIZE}, got {rc.reference_size}")
    if rc.reference_permutations < 19:
        raise ValueError("report.reference_permutations must be >= 19 (a 95 % noise floor), "
                         f"got {rc.reference_permutations}")
    if not 0 <= rc.near_duplicate_fraction < 1:
        raise ValueError("report.near_duplicate_fraction must be in [0, 1), got "
                         f"{rc.near_duplicate_fraction}")


def _checkpoint(ds: Dataset, kind: str, override: str | None) -> str:
    path = override or ((ds.plan.get("checkpoints") or {}).get(kind) or {}).get("path")
    if not path:
        raise DatasetError(f"{ds.path}/plan.json names no {kind} checkpoint; pass --{kind}")
    if not os.path.exists(path):
        raise DatasetError(f"{kind} checkpoint {path} not found"
                           + ("" if override else f" (named by {ds.path}/plan.json; pass "
                              f"--{kind} if it moved)"))
    return path


def run(dataset: str, rc, out: str | None = None, classifier: str | None = None,
        generator: str | None = None, embedders: Mapping[str, Embedder] | None = None,
        log: Callable[[str], None] = print, budget_bytes: int | None = None) -> dict:
    """Opens ``dataset``, builds the report and writes it to ``out`` (default DIR/report).

    Args:
      rc: report settings (``config.report``).
      budget_bytes: memory budget of one batched step call (``build``); the entry point
        passes ``sizing.budget_bytes(config.memory_budget_gb)``.
      classifier, generator: checkpoint paths overriding the ones plan.json names (the
        generator is loaded for datasets without image files and for the unguided
        reference, ``rc.reference_size`` > 0).

    Returns:
      The report dict (as report.json).
    """
    import jaxfair

    validate(rc)
    ds = Dataset.open(dataset)
    out = os.path.abspath(out or os.path.join(dataset, "report"))
    check_out(out)
    C = jaxfair.load_classifier(_checkpoint(ds, "classifier", classifier))
    G = None
    if ds.plan["image_format"] == "none" or rc.reference_size > 0:
        G = jaxfair.load_generator(_checkpoint(ds, "generator", generator))
    report, files = build(ds, C, rc, G, embedders, log, budget_bytes)
    write(out, files)
    return report
