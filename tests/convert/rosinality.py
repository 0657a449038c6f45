"""Test helper: an NVIDIA G_ema state dict re-expressed as a rosinality stylegan2-pytorch
checkpoint (the inverse of the documented key mapping, including rosinality's 1/sqrt(fan_in)
weight scaling in modulated convs)."""

import collections
import math

import numpy as np

BLUR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64 * 4  # make_kernel * 2**2


def _layer(sd, src, nv, dst, noise_key):
    w = nv[f"{dst}.weight"]  # [O, I, k, k]
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    sd[f"{src}.conv.weight"] = (w.astype(np.float64) * math.sqrt(fan_in)).astype(
        np.float32)[None]
    sd[f"{src}.conv.modulation.weight"] = nv[f"{dst}.affine.weight"]
    sd[f"{src}.conv.modulation.bias"] = nv[f"{dst}.affine.bias"]
    sd[f"{src}.noise.weight"] = nv[f"{dst}.noise_strength"].reshape(1)
    sd[f"{src}.activate.bias"] = nv[f"{dst}.bias"]
    sd[noise_key] = nv[f"{dst}.noise_const"][None, None]


def to_rosinality(nv: dict, resolutions) -> dict:
    sd = collections.OrderedDict()
    i = 0
    while f"mapping.fc{i}.weight" in nv:
        sd[f"style.{i + 1}.weight"] = nv[f"mapping.fc{i}.weight"]
        sd[f"style.{i + 1}.bias"] = nv[f"mapping.fc{i}.bias"]
        i += 1
    sd["input.input"] = nv["synthesis.b4.const"][None]
    _layer(sd, "conv1", nv, "synthesis.b4.conv1", "noises.noise_0")
    sd["to_rgb1.conv.weight"] = nv["synthesis.b4.torgb.weight"][None]
    sd["to_rgb1.conv.modulation.weight"] = nv["synthesis.b4.torgb.affine.weight"]
    sd["to_rgb1.conv.modulation.bias"] = nv["synthesis.b4.torgb.affine.bias"]
    sd["to_rgb1.bias"] = nv["synthesis.b4.torgb.bias"].reshape(1, -1, 1, 1)
    for j, res in enumerate(resolutions[1:]):
        _layer(sd, f"convs.{2 * j}", nv, f"synthesis.b{res}.conv0", f"noises.noise_{2 * j + 1}")
        sd[f"convs.{2 * j}.conv.blur.kernel"] = BLUR
        _layer(sd, f"convs.{2 * j + 1}", nv, f"synthesis.b{res}.conv1",
               f"noises.noise_{2 * j + 2}")
        sd[f"to_rgbs.{j}.upsample.kernel"] = BLUR
        sd[f"to_rgbs.{j}.conv.weight"] = nv[f"synthesis.b{res}.torgb.weight"][None]
        sd[f"to_rgbs.{j}.conv.modulation.weight"] = nv[f"synthesis.b{res}.torgb.affine.weight"]
        sd[f"to_rgbs.{j}.conv.modulation.bias"] = nv[f"synthesis.b{res}.torgb.affine.bias"]
        sd[f"to_rgbs.{j}.bias"] = nv[f"synthesis.b{res}.torgb.bias"].reshape(1, -1, 1, 1)
    return sd
