"""The main job with method 'distribution': units drawn from the fitted group mixtures."""

import json
import os

import numpy as np

from jaxfair.pipeline import run as pipeline


def test_generate_with_the_distribution_method(fitted, tmp_path):
    config, workdir, meta = fitted
    config = config.copy_and_resolve_references()
    config.method = "distribution"
    config.distribution.workdir = workdir
    config.identities_per_group, config.identities_per_unit = 2, 1
    # Draws of 32, not the fit's 256: a unit of one identity needs one passing face, and
    # 2 runs x 12 units x 256 renders were 3/4 of this test's time.
    config.distribution.batch_size = 32
    out = str(tmp_path / "ds")
    summary = pipeline.run(config, out, log=lambda s: None)
    assert summary["method"] == "distribution" and summary["latent_space"] == "w"
    assert all(c["identities"] == 2 for c in summary["counts"].values())
    for unit in range(12):
        shard = os.path.join(out, "shards", f"{unit:05d}")
        with open(os.path.join(shard, "records.jsonl")) as f:
            (rec,) = [json.loads(line) for line in f]
        assert min(rec["target_probs"].values()) >= config.threshold
        assert np.load(os.path.join(shard, "latents.npy")).shape == (1, 64)
        assert not os.path.exists(os.path.join(shard, "z.npy"))
    # the same units again: a pure function of (config, weights, unit id)
    again = str(tmp_path / "again")
    pipeline.run(config, again, log=lambda s: None)
    for unit in (0, 11):
        a, b = (np.load(os.path.join(d, "shards", f"{unit:05d}", "latents.npy"))
                for d in (out, again))
        np.testing.assert_array_equal(a, b)
