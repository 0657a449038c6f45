# python -m jaxfair.generate --config=configs/ffhq256_fairface.py
"""FFHQ-256 + FairFace: a race x gender balanced dataset (14 groups) at 256 px.

Command (weights converted once with ``python -m jaxfair.convert``, see docs/real-job.md):

  python -m jaxfair.generate --config=configs/ffhq256_fairface.py \\
      --config.generator=checkpoints/ffhq256 --config.classifier=checkpoints/fairface \\
      --workdir=out/ffhq256_fairface

Size first, writing nothing: the same command with ``--dry_run``.

Outputs: plan.json, shards/NNNNN/ (PNG images, latents.npy in W, records.jsonl, DONE),
manifest.json: 1,000 identities per group for 7 races x 2 genders = 14,000 identities,
14,000 PNG images at 256 px (~1.5 GB).

Generator: FFHQ-256 'paper256' (stylegan2-ada-pytorch, 14.9 GMAC per image), truncation psi
0.7. Classifier: FairFace ResNet-34 (fairface7 schema; 3.7 GMAC per image at 224 px).
Acceptance: probability >= 0.9 of the target race and of the target gender.

Sizing (written for one 16-24 GB accelerator, or a many-core CPU host with >= 32 GB of
RAM): a ~37 GFLOP render-and-judge per face; the stream judges 128 prior faces per
compiled step, up to 128 gated proposals of the rare groups per call. Everything else as
configs/ffhq1024_fairface.py (from which this config is built: the same keys).

Variant ``:smoke``: 1 identity per group, small batches (a random stand-in test run).
"""

import importlib.util
import os

import ml_collections


def _load(name: str) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(
        f"jaxfair_config_{name}", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = _load("ffhq1024_fairface")(arg)
    c.generator = "checkpoints/ffhq256"  # flag: a converted FFHQ-256 directory
    c.workdir = "out/ffhq256_fairface"
    c.image_format = "png"  # ~12 ms per 256 px image: lossless is affordable
    c.writer_threads = 4
    c.search.score_resolution = 0  # at 256 px the full image is the cheap one
    c.planner.score_resolution = 0
    if not arg:
        c.render_batch = 64
        c.planner.update(dict(stream_batch=128, guided_batch=128))
        c.report.batch_size = 64
    return c
