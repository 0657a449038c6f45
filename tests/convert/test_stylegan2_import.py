"""StyleGAN2 import: NVIDIA pickle, rosinality .pt, checkpoint directories, bad keys."""

import os

import jax
import numpy as np
import pytest
import torch_writer
from rosinality import to_rosinality

import jaxfair
from jaxfair.convert import formats, torch_pickle
from jaxfair.convert import stylegan2 as sg_import
from jaxfair.convert.guard import CheckpointError
from jaxfair.io import checkpoints


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def nvidia(sg2_pkl):
    return sg_import.from_nvidia(torch_pickle.load_file(sg2_pkl))


def rel_err(got, ref):
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


def test_rosinality_file_converts_to_the_same_outputs(tmp_path, nvidia, sg2_ref):
    cfg, flat = nvidia
    path = str(tmp_path / "550000.pt")
    sd = to_rosinality(flat, cfg.block_resolutions)
    torch_writer.save_zip({"g_ema": sd, "latent_avg": flat["mapping.w_avg"]}, path)
    G = jaxfair.load_generator(path)
    assert G.config == cfg
    assert G.meta["source"]["format"] == "rosinality-pt"
    ws = np.asarray(G.mapping(sg2_ref["z"], 0.5, 4))
    assert np.max(np.abs(ws - sg2_ref["ws_psi05_cut4"])) <= 1e-5
    for ws_key, img_key in [("ws_psi07", "img_psi07_const"), ("ws_psi1", "img_psi1_const")]:
        img = np.asarray(G.synthesis(sg2_ref[ws_key]))
        assert rel_err(img, sg2_ref[img_key].transpose(0, 2, 3, 1)) <= 1e-4


def test_rosinality_missing_latent_avg(tmp_path, nvidia):
    cfg, flat = nvidia
    path = str(tmp_path / "g.pt")
    torch_writer.save_zip({"g_ema": to_rosinality(flat, cfg.block_resolutions)}, path)
    with pytest.raises(CheckpointError, match="latent_avg"):
        formats.read(path)


def test_converted_directory_round_trip(tmp_path, sg2_pkl, golden_G, sg2_ref):
    conv = formats.read(sg2_pkl)
    out = str(tmp_path / "ckpt")
    checkpoints.save(out, conv.params, conv.meta())
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temp dir left behind
    meta = checkpoints.read_meta(out)
    assert meta["kind"] == "stylegan2" and meta["source"]["sha256"] == \
        checkpoints.sha256_file(sg2_pkl)
    G = jaxfair.load_generator(out)
    assert G.config == golden_G.config
    np.testing.assert_array_equal(np.asarray(G.synthesis(sg2_ref["ws_psi07"])),
                                  np.asarray(golden_G.synthesis(sg2_ref["ws_psi07"])))


def test_directory_of_wrong_kind_is_refused(tmp_path, sg2_pkl):
    conv = formats.read(sg2_pkl)
    out = str(tmp_path / "c")
    checkpoints.save(out, conv.params, {**conv.meta(), "kind": "resnet"})
    with pytest.raises(checkpoints.CheckpointDirError, match="not a StyleGAN2"):
        jaxfair.load_generator(out)


def test_missing_extra_and_misshaped_keys(nvidia):
    cfg, flat = nvidia
    with pytest.raises(CheckpointError, match="missing keys: synthesis.b8.conv0.bias"):
        sg_import.to_params(cfg, {k: v for k, v in flat.items()
                                  if k != "synthesis.b8.conv0.bias"})
    with pytest.raises(CheckpointError, match="unexpected keys: synthesis.b8.extra"):
        sg_import.to_params(cfg, {**flat, "synthesis.b8.extra": np.zeros(3)})
    bad = dict(flat)
    bad["synthesis.b16.conv1.weight"] = np.zeros((64, 32, 3, 3), np.float32)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*b16.conv1.weight.*\(64, 64, 3, 3"):
        sg_import.to_params(cfg, bad)


def test_settings_come_from_the_file(sg2_pkl):
    """conv_clamp and mapping depth are read per layer, not assumed."""
    top = torch_pickle.load_file(sg2_pkl)
    synthesis = top["G_ema"].state["_modules"]["synthesis"]
    for block in synthesis.state["_modules"].values():
        for layer in block.state["_modules"].values():
            layer.state["conv_clamp"] = 256
    mapping = top["G_ema"].state["_modules"]["mapping"]
    for name in ("fc6", "fc7"):
        del mapping.state["_modules"][name]
    cfg, flat = sg_import.from_nvidia(top)
    assert cfg.conv_clamp == 256.0 and cfg.mapping_layers == 6
    sg_import.to_params(cfg, flat)
    # One layer disagreeing is refused rather than silently ignored.
    synthesis.state["_modules"]["b8"].state["_modules"]["conv1"].state["conv_clamp"] = None
    with pytest.raises(CheckpointError, match="conv_clamp differs"):
        sg_import.from_nvidia(top)


def test_unsupported_generators_are_refused_by_name(sg2_pkl):
    top = torch_pickle.load_file(sg2_pkl)
    top["G_ema"].state["c_dim"] = 10
    with pytest.raises(CheckpointError, match="conditional"):
        sg_import.from_nvidia(top)
    top = torch_pickle.load_file(sg2_pkl)
    top["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b16"].state[
        "architecture"] = "resnet"
    with pytest.raises(CheckpointError, match="'resnet' is not supported"):
        sg_import.from_nvidia(top)
    with pytest.raises(CheckpointError, match="no 'G_ema'"):
        sg_import.from_nvidia({"G": None})
