"""jaxfair: demographically balanced synthetic faces from a biased StyleGAN2, in JAX."""

from jaxfair.loading import load_generator
from jaxfair.models.stylegan2 import Generator, StyleGAN2Config

__version__ = "0.1.0"

__all__ = ["Generator", "StyleGAN2Config", "load_generator", "__version__"]
