"""jaxfair: demographically balanced synthetic faces from a biased StyleGAN2, in JAX."""

from jaxfair.io.loading import load_classifier, load_generator
from jaxfair.judge.attributes import Schema, Target, enumerate_groups, parse_target
from jaxfair.judge.classifier import Classifier
from jaxfair.judge.preprocess import CropBox, Preprocess
from jaxfair.models.stylegan2 import Generator, StyleGAN2Config

__version__ = "0.1.0"

__all__ = ["Classifier", "CropBox", "Generator", "Preprocess", "Schema", "StyleGAN2Config",
           "Target", "enumerate_groups", "load_classifier", "load_generator", "parse_target",
           "__version__"]
