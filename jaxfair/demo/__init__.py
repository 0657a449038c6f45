"""Procedural demo world: biased cartoon faces with exact labels, and its trained models."""

from jaxfair.demo.draw import render, sample
from jaxfair.demo.face import FaceParams, params_from_factors
from jaxfair.demo.world import (
    BIAS,
    BLEND_HALF_WIDTH,
    FACTORS,
    NUM_FACTORS,
    SCHEMA,
    THRESHOLDS,
    factors_from_normal,
    in_blend_zone,
    labels_from_factors,
    sample_factors,
)

__all__ = [
    "BIAS",
    "BLEND_HALF_WIDTH",
    "FACTORS",
    "NUM_FACTORS",
    "SCHEMA",
    "THRESHOLDS",
    "FaceParams",
    "factors_from_normal",
    "in_blend_zone",
    "labels_from_factors",
    "params_from_factors",
    "render",
    "sample",
    "sample_factors",
]
