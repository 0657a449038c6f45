"""Classifier import: torchvision ResNet .pt and DeepFace Keras 2 .h5, API and convert CLI."""

import json
import os

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch_writer
from absl import flags
from flax import nnx

import jaxfair
from jaxfair import keys
from jaxfair.convert import __main__ as cli
from jaxfair.convert import formats, keras_h5
from jaxfair.convert.guard import CheckpointError
from jaxfair.judge import attributes
from jaxfair.judge import preprocess as pp
from jaxfair.models import resnet

# Torchvision ResNet files ------------------------------------------------------------------

TINY_RN = resnet.ResNetConfig(stage_sizes=(1, 1), widths=(8, 16), stem_width=8, num_outputs=18)


def torchvision_sd(cfg, seed):
    """A torchvision-layout state dict (OIHW convs, [out, in] fc, BN stats + counters)."""
    rng = np.random.default_rng(seed)
    _, abstract = resnet.abstract(cfg)
    flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(abstract))[0]
    sd = {}
    for path, spec in flat:
        key = ".".join(str(p.key) for p in path)
        shape = tuple(spec.shape)
        if key.endswith("running_var"):
            x = rng.uniform(0.5, 2.0, shape)
        elif len(shape) == 4:
            x = rng.normal(0, np.sqrt(2 / np.prod(shape[:3])), shape).transpose(3, 2, 0, 1)
        elif len(shape) == 2:
            x = rng.normal(0, 0.3, shape).T
        else:
            x = 1 + rng.normal(0, 0.1, shape) if key.endswith("weight") else \
                rng.normal(0, 0.1, shape)
        sd[key] = np.ascontiguousarray(x, np.float32)
        if key.endswith("running_var"):
            sd[key.replace("running_var", "num_batches_tracked")] = np.array(7, np.int64)
    return sd


@pytest.fixture(scope="module")
def golden_pt(golden_dir):
    return os.path.join(golden_dir, "resnet34_w16.pt")


@pytest.fixture(scope="module")
def golden_ref(golden_dir):
    return dict(np.load(os.path.join(golden_dir, "resnet34_w16_reference.npz")))


def write_pt(tmp_path, name, sd):
    p = str(tmp_path / name)
    torch_writer.save_zip(sd, p)
    return p


def test_reads_golden_torchvision_pt(golden_pt):
    conv = formats.read(golden_pt)
    assert conv.kind == "resnet" and conv.schema == "fairface7"
    assert conv.source["format"] == "torchvision-pt"
    assert conv.config == resnet.ResNetConfig((3, 4, 6, 3), (16, 32, 64, 128), 16, 18)
    meta = conv.meta()
    assert meta["schema"] == "fairface7" and meta["kind"] == "resnet"
    assert resnet.ResNetConfig.from_dict(meta["config"]) == conv.config
    # torch layouts were transposed: conv OIHW -> HWIO, fc [out, in] -> [in, out].
    assert conv.params["conv1"]["weight"].shape == (7, 7, 3, 16)
    assert conv.params["layer2"][0]["downsample"][0]["weight"].shape == (1, 1, 16, 32)
    assert conv.params["fc"]["weight"].shape == (128, 18)


def test_num_batches_tracked_ignored_and_module_prefix(tmp_path):
    sd = torchvision_sd(TINY_RN, 0)
    assert any(k.endswith("num_batches_tracked") for k in sd)
    conv = formats.read(write_pt(tmp_path, "a.pt", sd))
    # DataParallel checkpoints prefix every key with 'module.'.
    conv2 = formats.read(write_pt(tmp_path, "b.pt", {f"module.{k}": v for k, v in sd.items()}))
    np.testing.assert_array_equal(conv.params["layer2"][0]["conv1"]["weight"],
                                  conv2.params["layer2"][0]["conv1"]["weight"])
    np.testing.assert_array_equal(conv.params["layer1"][0]["bn1"]["running_var"],
                                  sd["layer1.0.bn1.running_var"])


def test_schema_choice_and_head_size(tmp_path):
    p18 = write_pt(tmp_path, "r18.pt", torchvision_sd(TINY_RN, 1))
    assert formats.read(p18, schema="fairface4").schema == "fairface4"
    p9 = write_pt(tmp_path, "r9.pt", torchvision_sd(
        resnet.ResNetConfig((1, 1), (8, 16), 8, num_outputs=9), 1))
    with pytest.raises(CheckpointError, match="head has 9 outputs but schema fairface7 needs 18"):
        formats.read(p9, schema="fairface7")
    with pytest.raises(CheckpointError, match="no classifier schema for a head of 9 outputs"):
        formats.read(p9)
    with pytest.raises(CheckpointError, match="deepface schema is for DeepFace .h5 models"):
        formats.read(p18, schema="deepface")


@pytest.mark.parametrize("mutate,needle", [
    (lambda sd: sd.pop("layer1.0.bn2.running_mean"),
     "missing BatchNorm statistics: layer1.0.bn2.running_mean"),
    (lambda sd: sd.pop("layer2.0.downsample.1.running_var"),
     "missing BatchNorm statistics: layer2.0.downsample.1.running_var"),
    (lambda sd: sd.pop("layer2.0.conv2.weight"), "missing"),
    (lambda sd: sd.update({"layer1.0.conv3.weight": np.ones((8, 8, 1, 1), np.float32)}),
     "bottleneck ResNet"),
    (lambda sd: sd.update({"layer1.0.extra": np.ones(3, np.float32)}),
     "unexpected keys: layer1.0.extra"),
    (lambda sd: sd.update({"layer1.0.bn1.bias": np.ones(5, np.float32)}),
     "shape mismatch for 'layer1.0.bn1.bias'"),
])
def test_bad_resnet_files(tmp_path, mutate, needle):
    sd = torchvision_sd(TINY_RN, 2)
    mutate(sd)
    with pytest.raises(CheckpointError) as e:
        formats.read(write_pt(tmp_path, "bad.pt", sd))
    assert needle in str(e.value) and "\n" not in str(e.value)


# Keras 2 .h5 files ---------------------------------------------------------------------------

TINY_BLOCKS = ((4, 4), (6, 6), (8, 8, 8), (8, 8, 8), (8, 8, 8))
FC = 16


def keras_layers(backbone, head, offset=0):
    """The layer sequence of DeepFace's Keras model, with Keras 2 automatic names.

    Weightless layers (padding, pooling, dropout, flatten, softmax) appear in ``layer_names``
    like in real files. ``offset`` shifts the name counters, as a Keras session that had
    built other models would.
    """
    layers, n_conv, n_pad, n_pool = [], offset, offset, offset
    for b, widths in enumerate(TINY_BLOCKS):
        for i in range(len(widths)):
            n_pad += 1
            n_conv += 1
            layers.append((f"zero_padding2d_{n_pad}", {}))
            layers.append((f"conv2d_{n_conv}", backbone[f"conv{b + 1}_{i + 1}"]))
        n_pool += 1
        layers.append((f"max_pooling2d_{n_pool}", {}))
    layers += [(f"conv2d_{n_conv + 1}", backbone["fc6"]), (f"dropout_{offset + 1}", {}),
               (f"conv2d_{n_conv + 2}", backbone["fc7"]), (f"dropout_{offset + 2}", {}),
               ("predictions", head), (f"flatten_{offset + 1}", {}),
               (f"activation_{offset + 1}", {})]
    return layers


def write_keras_h5(path, layers, nested=False):
    """Writes Keras 2 ``save_weights`` layout (``nested``: ``model.save`` layout)."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if nested else f
        root.attrs["layer_names"] = np.asarray([n.encode("utf8") for n, _ in layers])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for name, weights in layers:
            g = root.create_group(name)
            wnames = [f"{name}/{leaf}:0" for leaf in weights]
            # Keras stores an empty list as an empty float array.
            g.attrs["weight_names"] = np.asarray([w.encode("utf8") for w in wnames])
            for wname, value in zip(wnames, weights.values()):
                d = g.create_dataset(wname, value.shape, dtype=value.dtype)
                d[...] = value
    return str(path)


def random_backbone(rng):
    bb, ch = {}, 3
    for b, widths in enumerate(TINY_BLOCKS):
        for i, w in enumerate(widths):
            bb[f"conv{b + 1}_{i + 1}"] = {
                "kernel": rng.normal(0, np.sqrt(2 / (9 * ch)), (3, 3, ch, w)).astype(np.float32),
                "bias": rng.normal(0, 0.1, (w,)).astype(np.float32)}
            ch = w
    bb["fc6"] = {"kernel": rng.normal(0, np.sqrt(2 / (4 * ch)), (2, 2, ch, FC)).astype(
        np.float32), "bias": rng.normal(0, 0.1, (FC,)).astype(np.float32)}
    bb["fc7"] = {"kernel": rng.normal(0, np.sqrt(2 / FC), (1, 1, FC, FC)).astype(np.float32),
                 "bias": rng.normal(0, 0.1, (FC,)).astype(np.float32)}
    return bb


def random_head(rng, k):
    return {"kernel": rng.normal(0, 0.5, (1, 1, FC, k)).astype(np.float32),
            "bias": rng.normal(0, 0.1, (k,)).astype(np.float32)}


def np_deepface(bb, head, x):
    """Naive numpy forward of one DeepFace Keras model (pre-softmax logits)."""
    def conv(x, p, pad, relu=True):
        k = p["kernel"].astype(np.float64)
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        kh = k.shape[0]
        ho, wo = x.shape[1] - kh + 1, x.shape[2] - kh + 1
        out = np.zeros((x.shape[0], ho, wo, k.shape[3])) + p["bias"]
        for i in range(kh):
            for j in range(kh):
                out += x[:, i:i + ho, j:j + wo] @ k[i, j]
        return np.maximum(out, 0) if relu else out

    for b, widths in enumerate(TINY_BLOCKS):
        for i in range(len(widths)):
            x = conv(x, bb[f"conv{b + 1}_{i + 1}"], 1)
        n, h, w, c = x.shape
        x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    x = conv(conv(x, bb["fc6"], 0), bb["fc7"], 0)
    return conv(x, head, 0, relu=False).reshape(x.shape[0], -1)


@pytest.fixture(scope="module")
def deepface_files(tmp_path_factory):
    """race and age share a backbone (bit-identical); gender has its own."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("deepface")
    shared, own = random_backbone(rng), random_backbone(rng)
    nets = {"race": (shared, random_head(rng, 6)), "gender": (own, random_head(rng, 2)),
            "age": (shared, random_head(rng, 101))}
    paths = {"race": write_keras_h5(d / "race_model_single_batch.h5",
                                    keras_layers(*nets["race"])),
             "gender": write_keras_h5(d / "gender_model_weights.h5",
                                      keras_layers(*nets["gender"], offset=16), nested=True),
             "age": write_keras_h5(d / "age_model_weights.h5", keras_layers(*nets["age"], 3))}
    return nets, paths


def test_h5_detection(deepface_files, golden_pt):
    _, paths = deepface_files
    assert keras_h5.is_hdf5(paths["race"]) and not keras_h5.is_hdf5(golden_pt)


def test_reads_three_heads_and_shares_identical_backbones(deepface_files):
    nets, paths = deepface_files
    # Order of --src does not matter: heads come out race, gender, age.
    conv = formats.read(",".join([paths["age"], paths["gender"], paths["race"]]))
    cfg = conv.config
    assert conv.kind == "vggface" and conv.schema == "deepface"
    assert cfg.heads == ("race", "gender", "age") and cfg.head_sizes == (6, 2, 101)
    assert cfg.head_backbone == (0, 1, 0) and cfg.num_backbones == 2
    assert cfg.blocks == TINY_BLOCKS and cfg.fc_width == FC and cfg.input_size == 64
    assert len(conv.source["sha256"]) == 3

    C = jaxfair.load_classifier(",".join(paths.values()))
    x = np.asarray(keys.uniform(jax.random.key(0), (2, 64, 64, 3)))
    with jax.default_matmul_precision("highest"):
        out = np.asarray(C.logits(x))
    ref = np.concatenate([np_deepface(*nets[h], x.astype(np.float64))
                          for h in ("race", "gender", "age")], axis=1)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert C.schema == attributes.deepface_schema(("race", "gender", "age"))


def test_single_race_file(deepface_files):
    nets, paths = deepface_files
    conv = formats.read(paths["race"])
    assert conv.config.heads == ("race",) and conv.config.num_backbones == 1


def bad_h5_layers(nets, case):
    bb, head = nets["race"]
    layers = keras_layers(bb, head)
    if case == "dense":  # a Dense head instead of the 1x1 conv
        layers[-3] = ("dense_1", {"kernel": np.ones((FC, 6), np.float32),
                                  "bias": np.ones(6, np.float32)})
    elif case == "batchnorm":
        layers.insert(3, ("batch_normalization_1", {k: np.ones(4, np.float32) for k in (
            "gamma", "beta", "moving_mean", "moving_variance")}))
    elif case == "missing_conv":
        del layers[1]
    elif case == "identity_head":
        layers[-3] = ("conv2d_16", random_head(np.random.default_rng(0), 2622))
    elif case == "kernel":
        layers[6] = (layers[6][0], {"kernel": np.ones((5, 5, 4, 6), np.float32),
                                    "bias": np.ones(6, np.float32)})
    return layers


@pytest.mark.parametrize("case,needle", [
    ("dense", "unknown layer layout: layer 'dense_1' (head) has weights"),
    ("batchnorm", "unknown layer layout: 17 layers with weights"),
    ("missing_conv", "unknown layer layout: 15 layers with weights"),
    ("identity_head", "head has 2622 outputs; DeepFace heads are race (6), gender (2), "
                      "age (101)"),
    ("kernel", "has a 5x5 kernel, expected 3"),
])
def test_bad_h5_layouts(tmp_path, deepface_files, case, needle):
    nets, _ = deepface_files
    p = write_keras_h5(tmp_path / "bad.h5", bad_h5_layers(nets, case))
    with pytest.raises(CheckpointError) as e:
        formats.read(p)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_h5_combinations(tmp_path, deepface_files, golden_pt):
    _, paths = deepface_files
    with pytest.raises(CheckpointError, match="two race models given"):
        formats.read([paths["race"], paths["race"]])
    with pytest.raises(CheckpointError, match="not an HDF5 file"):
        formats.read([paths["race"], golden_pt])
    with pytest.raises(CheckpointError, match="follow the deepface schema, not fairface7"):
        formats.read(paths["race"], schema="fairface7")
    with pytest.raises(CheckpointError, match="only accepted for DeepFace"):
        formats.read([golden_pt, golden_pt])
    empty = tmp_path / "keras3.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("layers")
    with pytest.raises(CheckpointError, match="no 'layer_names' attribute"):
        formats.read(str(empty))


# API and CLI ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fairface_dir(tmp_path_factory, golden_pt):
    out = tmp_path_factory.mktemp("ckpt") / "fairface"
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["convert", f"--src={golden_pt}", f"--out={out}"])
    cli.main()
    return str(out)


def test_cli_converts_fairface_and_records_schema(fairface_dir, golden_ref):
    with open(os.path.join(fairface_dir, "meta.json")) as f:
        meta = json.load(f)
    assert meta["kind"] == "resnet" and meta["schema"] == "fairface7"
    assert meta["source"]["format"] == "torchvision-pt"
    C = jaxfair.load_classifier(fairface_dir)
    assert C.schema is attributes.FAIRFACE7 and C.preprocess == pp.Preprocess.fairface()
    x = golden_ref["x_nchw"].transpose(0, 2, 3, 1)
    with jax.default_matmul_precision("highest"):
        out = np.asarray(C.logits(x))
    ref = golden_ref["logits"]
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_predict_equals_preprocess_logits_softmax(fairface_dir):
    C = jaxfair.load_classifier(fairface_dir)
    images = keys.uniform(jax.random.key(5), (2, 96, 96, 3), minval=-1, maxval=1)
    probs = C.predict(images)
    assert set(probs) == {"race", "gender", "age"} and probs["race"].shape == (2, 7)
    z = np.asarray(C.logits(pp.preprocess(images, C.preprocess)))
    for a in C.schema.attributes:
        e = np.exp(z[:, a.start:a.stop] - z[:, a.start:a.stop].max(-1, keepdims=True))
        np.testing.assert_allclose(probs[a.name], e / e.sum(-1, keepdims=True), atol=2e-5)


def test_load_from_source_equals_dir(fairface_dir, golden_pt):
    a = jaxfair.load_classifier(fairface_dir)
    b = jaxfair.load_classifier(golden_pt)
    x = keys.normal(jax.random.key(6), (1, 224, 224, 3))
    np.testing.assert_array_equal(a.logits(x), b.logits(x))
    assert b.meta["source"]["file"] == "resnet34_w16.pt"
    four = jaxfair.load_classifier(golden_pt, schema="fairface4")
    assert set(four.predict(jnp.zeros((1, 64, 64, 3)))) == {"race"}
    with pytest.raises(Exception, match="not a StyleGAN2 generator"):
        jaxfair.load_generator(fairface_dir)


def test_cli_fairface4_and_deepface(tmp_path, convert_cli, golden_pt, deepface_files):
    nets, paths = deepface_files
    code, out, err = convert_cli(f"--src={golden_pt}", "--schema=fairface4",
                         f"--out={tmp_path / 'ff4'}")
    assert code == 0, err
    assert "schema fairface4" in out
    src = ",".join([paths["race"], paths["gender"]])
    code, out, err = convert_cli(f"--src={src}", f"--out={tmp_path / 'df'}")
    assert code == 0 and "wrote vggface checkpoint" in out, err
    C = jaxfair.load_classifier(str(tmp_path / "df"))
    assert C.config.heads == ("race", "gender") and C.config.head_backbone == (0, 1)
    assert C.preprocess == pp.Preprocess.deepface(size=64)
    x = np.asarray(keys.uniform(jax.random.key(7), (2, 64, 64, 3)))
    with jax.default_matmul_precision("highest"):
        out = np.asarray(C.logits(x))
    ref = np.concatenate([np_deepface(*nets[h], x.astype(np.float64)) for h in ("race",
                                                                                "gender")], 1)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    probs = C.predict(jnp.zeros((3, 128, 128, 3)))
    assert probs["race"].shape == (3, 6) and probs["gender"].shape == (3, 2)


def test_cli_bad_classifier_inputs_one_line_exit_2(tmp_path, convert_cli, golden_pt,
                                                    deepface_files):
    nets, paths = deepface_files
    sd = torchvision_sd(TINY_RN, 3)
    no_stats = dict(sd)
    no_stats.pop("bn1.running_var")
    head9 = write_pt(tmp_path, "h9.pt", torchvision_sd(resnet.ResNetConfig((1, 1), (8, 16), 8,
                                                                           9), 0))
    cases = [
        ([f"--src={head9}", "--schema=fairface7"], "head has 9 outputs"),
        ([f"--src={write_pt(tmp_path, 'ns.pt', no_stats)}"],
         "missing BatchNorm statistics: bn1.running_var"),
        ([f"--src={write_keras_h5(tmp_path / 'd.h5', bad_h5_layers(nets, 'dense'))}"],
         "unknown layer layout"),
        ([f"--src={paths['race']}", "--schema=fairface4"], "deepface schema"),
        ([f"--src={paths['race']},{golden_pt}"], "not an HDF5 file"),
    ]
    for args, needle in cases:
        before = set(os.listdir(tmp_path))
        code, out, err = convert_cli(*args, f"--out={tmp_path / 'out'}")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and needle in lines[0], (args, err)
        assert "Traceback" not in err and not out
        assert set(os.listdir(tmp_path)) == before  # nothing written


def test_unknown_target_names_list_valid_ones(fairface_dir):
    C = jaxfair.load_classifier(fairface_dir)
    with pytest.raises(attributes.TargetError, match="valid: race, gender, age"):
        jaxfair.parse_target("skin=dark", C.schema)
