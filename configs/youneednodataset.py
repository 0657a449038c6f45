# python -m jaxfair.generate --config=configs/youneednodataset.py
"""The original evolutionary method's setting (Jain et al., T-BIOM 2024; youneednodataset).

Command (DeepFace race model converted with ``python -m jaxfair.convert
--src=race_model_single_batch.h5 --out=checkpoints/deepface``):

  python -m jaxfair.generate --config=configs/youneednodataset.py \\
      --config.generator=checkpoints/ffhq1024 --config.classifier=checkpoints/deepface \\
      --workdir=out/youneednodataset

Size first, writing nothing: the same command with ``--dry_run``.

Setting: StyleGAN2 FFHQ-1024 config-f, truncation psi 0.7, z space; DeepFace race head
(6 classes: asian, indian, black, white, middle eastern, latino hispanic); the original
branching search (a root per lineage found by rejection, 3 children ``z + N(0, 0.5^2)``,
a lineage stops after 20 failures); acceptance = the argmax race is the target (no
threshold); 50,000 identities per race.

Outputs: plan.json, shards/ (JPEG images at 1024 px, latents, records, DONE),
manifest.json: 6 x 50,000 = 300,000 identities. Where the pipeline has the paper's
variation recipe (``variation_recipe``, issue 17) this config turns it on: 45 more images
per identity (expression 5, pose 20, illumination 20 along the Colbois et al. directions,
``--config.directions=latent_directions.pkl``), 13.8 M images (~4.5 TB as JPEG); without
it, one image per identity (~100 GB).

Sizing (written for a pod or several 80 GB accelerators: 300,000 identities at ~150 GFLOP
per evaluation): 64 fused searches of population 16 per step (4 units of 16 searches),
units of 250 identities; render batch 16 at 1024 px.

Variant ``:smoke``: 1 identity per group, small populations (a random stand-in test run).
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
    c = _load("demo")()
    c.method = "search"
    c.generator = "checkpoints/ffhq1024"  # flag: a converted FFHQ-1024 directory
    c.classifier = "checkpoints/deepface"  # flag: converted DeepFace race model
    c.workdir = "out/youneednodataset"
    c.attributes = ("race",)  # 6 groups
    c.threshold = 0.5  # unused by the argmax rule (search.accept_mode); kept > 0.5 if switched
    c.truncation_psi = 0.7
    c.noise_mode = "const"
    c.image_format = "jpg"
    c.identities_per_group = 50_000
    c.identities_per_unit = 250
    c.units_per_step = 4
    c.searches_per_unit = 16
    c.render_batch = 16
    c.writer_threads = 8
    c.search.update(dict(
        target="race=black",
        strategy="branching",  # the original method (jaxfair.search.strategies.Branching)
        space="z",
        accept_mode="argmax",
        population_size=16,
        num_searches=64,
        generations_per_chunk=10,
        max_generations=2000,
        num_accepted=256,
        archive_capacity=256,
        score_resolution=0,  # the original judges full 1024 px images
    ))
    c.report.batch_size = 16
    if "variation_recipe" in c:  # the paper recipe (issue 17), where the pipeline has it
        c.variation_recipe = "paper"  # 45 images per identity: expression 5, pose 20, light 20
        c.directions = "checkpoints/latent_directions.pkl"  # flag: Colbois et al. directions
        c.keep_outside_group = True  # the original never re-checks a moved face's group
    if arg == "smoke":
        c.identities_per_group = 1
        c.identities_per_unit = 1
        c.units_per_step = 6
        c.searches_per_unit = 1
        c.render_batch = 2
        if "variation_recipe" in c:  # no directions file needed for a smoke run
            c.variation_recipe, c.directions = "random", ""
        c.search.update(dict(population_size=4, generations_per_chunk=2, archive_capacity=8,
                             num_accepted=8))
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; use smoke")
    return c
