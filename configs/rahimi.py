# python -m jaxfair.sample fit --config=configs/rahimi.py  (then: jaxfair.generate, same config)
"""The distribution method (Rahimi, Ecabert, Marcel, IJCB 2023) on FairFace race x gender.

Commands (fit once, then make the dataset from the fitted mixtures):

  python -m jaxfair.sample fit --config=configs/rahimi.py \\
      --config.generator=checkpoints/ffhq256 --config.classifier=checkpoints/fairface
  python -m jaxfair.generate --config=configs/rahimi.py \\
      --config.generator=checkpoints/ffhq256 --config.classifier=checkpoints/fairface \\
      --workdir=out/rahimi

Size first, writing nothing: the generate command with ``--dry_run``.

Setting: StyleGAN2 FFHQ-256 (the public port's resolution), W space, no truncation (psi 1,
as published). 100,000 W latents labelled by FairFace; the published autoencoder
512 -> 256 -> 128 -> 64 -> 32 (``distribution.hidden`` lists the hidden widths between
w_dim 512 and the 32-d code), one diagonal Gaussian mixture per race x gender group (14
groups) in the code space; draws decoded to W, rendered, and kept when FairFace puts them
in the group at probability >= 0.9 on both attributes (the published method keeps every
draw; the dataset's rule is jaxfair's). The decoder's last layer is linear: the published
leaky_relu fits standardised W worse (docs/distribution.md).

Outputs: ``fit``: out/rahimi_fit (autoencoder, mixtures, labels); ``generate``: plan.json,
shards/ (PNG at 256 px), manifest.json: 1,000 identities per group, 14,000 images.

Sizing (one 16-24 GB accelerator or a many-core CPU host with >= 32 GB): labelling is a
256 px render + ResNet-34 per latent (~37 GFLOP) in batches of 128; autoencoder training
is negligible beside it (20,000 Adam steps of batch 1,024 on 512-d vectors).

Variant ``:smoke``: 1 identity per group, 2,048 labelled latents (a random stand-in run).
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
    c.method = "distribution"
    c.generator = "checkpoints/ffhq256"  # flag: a converted FFHQ-256 directory
    c.classifier = "checkpoints/fairface"  # flag: converted FairFace (fairface7 schema)
    c.workdir = "out/rahimi"
    c.attributes = ("race", "gender")
    c.threshold = 0.9
    c.truncation_psi = 1.0  # W as published
    c.noise_mode = "const"
    c.image_format = "png"
    c.identities_per_group = 1000
    c.identities_per_unit = 50
    c.units_per_step = 14
    c.render_batch = 64
    c.writer_threads = 4
    c.identity_radius = 0.05
    c.distribution.update(dict(
        workdir="out/rahimi_fit",
        attributes=("race", "gender"),
        extra_groups=(),
        num_samples=100_000,
        batch_size=128,
        threshold=0.9,
        min_group_samples=256,
        truncation_psi=1.0,
        hidden=(256, 128, 64),  # 512 -> 256 -> 128 -> 64 -> 32 (published)
        code_dim=32,
        output_activation="linear",
        ae_steps=20_000,
        ae_batch_size=1024,
        learning_rate=1e-3,
        holdout=4096,
        num_components=8,
        covariance="diag",  # published
        em_steps=300,
        counts="race=black,gender=female:64",
        max_draw_factor=50,
        image_format="png",
    ))
    c.report.batch_size = 64
    if arg == "smoke":
        c.identities_per_group = 1
        c.identities_per_unit = 1
        c.render_batch = 2
        c.distribution.update(dict(num_samples=2048, batch_size=16, min_group_samples=4,
                                   ae_steps=100, ae_batch_size=256, holdout=256,
                                   num_components=2, em_steps=20))
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; use smoke")
    return c
