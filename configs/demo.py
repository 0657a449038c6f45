# python -m jaxfair.generate --config=configs/demo.py
"""Default config of the main job.

Until the demo world (checkpoints/demo) lands, this samples unguided images from
checkpoints/sg2_tiny: the golden tiny StyleGAN2 (official NVIDIA format, random weights,
32x32) converted with ``python -m jaxfair.convert``. Its images are noise-like by design.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.generator = "checkpoints/sg2_tiny"
    c.workdir = "out/demo"
    c.num_images = 64
    c.batch_size = 32
    c.seed = 0
    c.truncation_psi = 0.7
    c.noise_mode = "const"
    c.image_format = "png"
    if arg == "smoke":
        c.num_images = 8
        c.batch_size = 4
    return c
