"""The peer benchmark's weight export (no torch needed) and its result tables."""

import jax
import numpy as np
from flax import nnx

from jaxfair import peer
from jaxfair.convert import stylegan2 as convert_sg2
from jaxfair.convert.assign import flatten
from jaxfair.models import stylegan2 as sg


def test_official_state_round_trips_through_the_importer():
    cfg = sg.StyleGAN2Config.create(z_dim=8, w_dim=8, img_resolution=16, channel_base=64,
                                    channel_max=8, mapping_layers=2, conv_clamp=256.0)
    G = peer.random_generator(cfg, jax.random.key(0))
    sd = peer.to_official_state(G)
    # torch layouts: FC [out, in], conv [O, I, k, k], const [C, 4, 4].
    assert sd["mapping.fc0.weight"].shape == (8, 8)
    assert sd["synthesis.b8.conv0.weight"].shape == (8, 8, 3, 3)
    assert sd["synthesis.b4.const"].shape == (8, 4, 4)
    back = flatten(convert_sg2.to_params(cfg, sd))
    want = flatten(nnx.to_pure_dict(sg.stored_weights(G.state)))
    assert back.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(np.asarray(back[k]), np.asarray(want[k]), err_msg=k)
    # What the official init leaves at zero is random here, so comparisons exercise it.
    assert np.any(sd["synthesis.b8.conv1.noise_strength"] != 0)
    assert np.any(sd["mapping.w_avg"] != 0)


def test_official_kwargs_reproduce_the_channels():
    for name, make in peer.PRESETS.items():
        cfg = make()
        syn = peer.official_kwargs(cfg)["synthesis_kwargs"]
        chans = tuple(min(syn["channel_base"] // r, syn["channel_max"])
                      for r in cfg.block_resolutions)
        assert chans == cfg.channels, name
        assert syn["conv_clamp"] == cfg.conv_clamp and syn["num_fp16_res"] == 0


def test_best_batches_and_table():
    rows = [{"model": "m", "batch": b, "official_img_s": o, "jaxfair_img_s": j,
             "ratio": j / o, "exec_gflop": 1.0, "arch_gflop": 1.0, "flop_ratio": 1.0,
             "jaxfair_peak_fraction": 0.5, "official_peak_fraction": 0.25,
             "max_abs_diff": 1e-5}
            for b, o, j in [(1, 2.0, 3.0), (8, 1.0, 5.0)]]
    best = peer.best_batches(rows)
    assert best == [{"model": "m", "jaxfair_img_s": 5.0, "jaxfair_batch": 8,
                     "official_img_s": 2.0, "official_batch": 1, "ratio": 2.5}]
    assert peer.table(rows).count("\n| m |") == 2
