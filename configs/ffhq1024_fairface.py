# python -m jaxfair.generate --config=configs/ffhq1024_fairface.py
"""FFHQ-1024 + FairFace: a race x gender balanced dataset (14 groups) at 1024 px.

Command (weights converted once with ``python -m jaxfair.convert``, see docs/real-job.md):

  python -m jaxfair.generate --config=configs/ffhq1024_fairface.py \\
      --config.generator=checkpoints/ffhq1024 --config.classifier=checkpoints/fairface \\
      --workdir=out/ffhq1024_fairface

Size first, writing nothing: the same command with ``--dry_run``.

Outputs (docs/main-job.md, "Dataset format"): plan.json, shards/NNNNN/ (JPEG q95 images,
latents.npy in W, records.jsonl, DONE), manifest.json: 1,000 identities per group for the
7 FairFace races x 2 genders = 14,000 identities, ~14,000 images at 1024 px (~5 GB as JPEG).

Generator: NVIDIA ``stylegan2-ffhq-1024x1024.pkl`` (config-f), truncation psi 0.7 as the
original method. Classifier: FairFace ``res34_fair_align_multi_7_20190809.pt`` (fairface7
schema). Acceptance: probability >= 0.9 of the target race and of the target gender.

Sizing (written for one 80 GB accelerator, A100/H100 class): the planner's stream renders
and classifies 64 prior faces per compiled step, up to 64 gated proposals of the rare groups
per call. FairFace reports 93.7 % race accuracy: the rarest FFHQ groups (e.g. Middle
Eastern female) have yields of ~0.5 %, which their gates raise where race is close to
linear in W, within a budget of <= 500 evaluations per identity. Every method judges the
256 px block's skip image (``planner.score_resolution``, ``search.score_resolution``: the
512 and 1024 px blocks, the costliest, are skipped) and renders and judges 1024 px images
only for accepted faces (disagreements are counted in the manifest, ``score_disagreements``).
On a CPU, ``--dry_run`` reports the compiled memory of every step for the chosen
``memory_budget_gb``.

Variant ``:smoke``: 1 identity per group, small batches (a random stand-in test run).
"""

import importlib.util
import os

import ml_collections


def _demo() -> ml_collections.ConfigDict:
    """configs/demo.py's config: every real-job config has exactly its keys."""
    spec = importlib.util.spec_from_file_location(
        "jaxfair_config_demo", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = _demo()
    c.method = "planner"
    c.generator = "checkpoints/ffhq1024"  # flag: a converted FFHQ-1024 directory
    c.classifier = "checkpoints/fairface"  # flag: converted FairFace (fairface7 schema)
    c.workdir = "out/ffhq1024_fairface"
    c.attributes = ("race", "gender")  # 7 x 2 = 14 groups
    # Real classifiers are calibrated (FairFace: 94 % gender, 94 % race accuracy): 0.9 on
    # each attribute keeps confident faces without making the rarest groups unreachable.
    c.threshold = 0.9
    c.truncation_psi = 0.7  # as the original method (youneednodataset)
    c.noise_mode = "const"
    c.image_format = "jpg"  # PNG at 1024 px costs ~200 ms of a core per image, JPEG ~2 ms
    c.identities_per_group = 1000
    c.identities_per_unit = 50
    c.units_per_step = 14  # one unit per group per step
    c.searches_per_unit = 4
    c.identity_radius = 0.05
    c.render_batch = 16  # 1024 px render + classify: ~16 x 150 GFLOP per call
    c.writer_threads = 8  # JPEG encoding and shard writes, off the compute thread
    c.planner.update(dict(
        stream_batch=64,  # 1024 px faces rendered and judged per compiled stream step
        stream_batches=8,  # stream steps per planner round
        guided_batch=64,  # gated proposals of the rare groups per round, one call
        score_resolution=256,  # judge the 256 px block's skip image; 1024 px for accepted
        max_evaluations_per_identity=500,
        fit_samples=8192,
    ))
    c.search.update(dict(
        target="race=black,gender=female",
        strategy="Sep_CMA_ES", space="z", population_size=32, num_searches=16,
        score_resolution=256, eval_batch=0, max_generations=300))
    c.distribution.attributes = ("race", "gender")
    c.distribution.extra_groups = ()
    c.distribution.counts = "race=black,gender=female:64"
    c.report.batch_size = 16
    if arg == "smoke":
        c.identities_per_group = 1
        c.identities_per_unit = 1
        c.searches_per_unit = 1
        c.render_batch = 2
        c.image_format = "jpg"
        c.planner.update(dict(stream_batch=8, stream_batches=1, guided_batch=8,
                              fit_samples=256))
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; use smoke")
    return c
