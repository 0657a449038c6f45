"""jaxfair: demographically balanced synthetic faces from a biased StyleGAN2, in JAX."""

from jaxfair.attributes import Schema, Target, enumerate_groups, parse_target
from jaxfair.classifier import Classifier
from jaxfair.loading import load_classifier, load_generator
from jaxfair.models.stylegan2 import Generator, StyleGAN2Config
from jaxfair.preprocess import CropBox, Preprocess

__version__ = "0.1.0"

__all__ = ["Classifier", "CropBox", "Generator", "Preprocess", "Schema", "StyleGAN2Config",
           "Target", "enumerate_groups", "load_classifier", "load_generator", "parse_target",
           "__version__"]
