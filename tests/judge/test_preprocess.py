"""Generator image -> classifier input: crop boxes, antialiased resize, normalisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxfair import keys
from jaxfair.judge import preprocess as pp


def test_fairface_box_constants():
    b = pp.FAIRFACE_FFHQ_BOX
    np.testing.assert_allclose([b.left, b.top, b.right, b.bottom],
                               [0.1504, 0.2532, 0.8589, 0.9618], atol=1e-4)
    # Square, 1.5 template units (padding 0.25 each side) over FFHQ's 2.117 units.
    assert abs((b.right - b.left) - (b.bottom - b.top)) < 1e-5
    np.testing.assert_allclose(b.right - b.left, 1.5 / pp._ffhq_frame()[2], rtol=1e-5)


def test_ffhq_frame_reproduces_ffhq_alignment():
    """On the mean face, FFHQ's crop puts the eyes 1/4 of the image apart, centred."""
    lx, ly = pp._to_ffhq(*pp.DLIB_LEFT_EYE)
    rx, ry = pp._to_ffhq(*pp.DLIB_RIGHT_EYE)
    mx, my = pp._to_ffhq(*pp.DLIB_MOUTH)
    np.testing.assert_allclose([lx, rx, ly - ry], [0.375, 0.625, 0.0], atol=1e-5)
    # The crop centre is eye_avg + 0.1 * eye_to_mouth.
    np.testing.assert_allclose(0.5, ly + 0.1 * (my - ly), atol=1e-6)
    assert abs(mx - 0.5) < 1e-5


@pytest.mark.parametrize("padding", [0.0, 0.25, 0.3])
def test_chip_box_maps_template_to_chip(padding):
    """Eye centres fall where dlib's chip puts them: (padding + t) / (1 + 2 padding)."""
    b = pp.dlib_chip_box(padding)
    for tx, ty in (pp.DLIB_LEFT_EYE, pp.DLIB_RIGHT_EYE, pp.DLIB_MOUTH):
        fx, fy = pp._to_ffhq(tx, ty)
        chip_x = (fx - b.left) / (b.right - b.left)
        chip_y = (fy - b.top) / (b.bottom - b.top)
        np.testing.assert_allclose([chip_x, chip_y],
                                   [(padding + tx) / (1 + 2 * padding),
                                    (padding + ty) / (1 + 2 * padding)], atol=2e-5)


def test_deepface_box_puts_eyes_where_requested():
    b = pp.DEEPFACE_FFHQ_BOX
    w = b.right - b.left
    assert abs(w - (b.bottom - b.top)) < 1e-5
    lx, ly = pp._to_ffhq(*pp.DLIB_LEFT_EYE)
    rx, _ = pp._to_ffhq(*pp.DLIB_RIGHT_EYE)
    np.testing.assert_allclose([(lx - b.left) / w, (rx - b.left) / w, (ly - b.top) / w],
                               [0.31, 0.69, 0.40], atol=1e-5)


def test_crop_box_validation():
    with pytest.raises(ValueError, match="crop box"):
        pp.CropBox(0.5, 0.2, 0.4, 0.9)
    with pytest.raises(ValueError, match="crop box"):
        pp.CropBox(0.1, 0.2, 0.9, 1.2)


def test_crop_resize_matches_pil_bilinear():
    """Same antialiased bilinear as PIL's resize (what FairFace's torchvision Resize ran)."""
    rng = np.random.default_rng(0)
    img = rng.random((2, 64, 48, 3)).astype(np.float32)
    box = pp.CropBox(0.1, 0.2, 0.85, 0.9)
    out = np.asarray(pp.crop_resize(jnp.asarray(img), box, 20))
    h, w = 64, 48
    pil_box = (box.left * w, box.top * h, box.right * w, box.bottom * h)
    for n in range(2):
        ref = np.stack([np.asarray(Image.fromarray(img[n, :, :, c], mode="F").resize(
            (20, 20), Image.BILINEAR, box=pil_box)) for c in range(3)], -1)
        np.testing.assert_allclose(out[n], ref, atol=1e-5)


def test_crop_resize_identity_and_integer_crop():
    rng = np.random.default_rng(1)
    img = jnp.asarray(rng.random((1, 32, 32, 3)), jnp.float32)
    full = pp.crop_resize(img, pp.CropBox(0.0, 0.0, 1.0, 1.0), 32)
    np.testing.assert_allclose(full, img, atol=1e-6)
    # A 16-pixel box at output size 16 is a plain slice.
    sub = pp.crop_resize(img, pp.CropBox(0.25, 0.125, 0.75, 0.625), 16)
    np.testing.assert_allclose(sub, img[:, 4:20, 8:24], atol=1e-6)


def test_downscale_reproduces_linear_ramp():
    """Linear kernels reproduce a linear image at the output pixel centres (interior)."""
    y, x = np.meshgrid(np.arange(96) + 0.5, np.arange(96) + 0.5, indexing="ij")
    img = np.stack([x, y, x + y], -1)[None].astype(np.float32)
    box = pp.CropBox(0.25, 0.125, 0.875, 0.75)  # 60 px -> 15: factor 4
    out = np.asarray(pp.crop_resize(jnp.asarray(img), box, 15))[0]
    centres = (np.arange(15) + 0.5) * 4
    ex, ey = np.meshgrid(centres + 24, centres + 12, indexing="xy")
    np.testing.assert_allclose(out[2:-2, 2:-2, 0], ex[2:-2, 2:-2], atol=1e-3)
    np.testing.assert_allclose(out[2:-2, 2:-2, 1], ey[2:-2, 2:-2], atol=1e-3)


def test_normalisation_per_model():
    rng = np.random.default_rng(2)
    unit = rng.random((2, 4, 4, 3)).astype(np.float32)
    ff = pp.normalize(jnp.asarray(unit), pp.Preprocess.fairface())
    ref = (unit - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(ff, ref, rtol=1e-5, atol=1e-6)
    df = pp.normalize(jnp.asarray(unit), pp.Preprocess.deepface())
    np.testing.assert_allclose(df, unit[..., ::-1], atol=0)  # BGR, [0, 1], no mean


def test_preprocess_end_to_end_batched_and_clipped():
    key = jax.random.key(3)
    images = keys.uniform(key, (3, 64, 64, 3), minval=-1.3, maxval=1.3)
    spec = pp.Preprocess.fairface(size=24)
    f = jax.jit(pp.preprocess, static_argnums=1)
    out = np.asarray(f(images, spec))
    assert out.shape == (3, 24, 24, 3)
    # Batch equals per-item.
    one = np.asarray(f(images[1:2], spec))
    np.testing.assert_allclose(out[1:2], one, atol=1e-6)
    # Reference: clip to [0, 1] first, then crop/resize, then normalise.
    unit = np.clip((np.asarray(images) + 1) / 2, 0, 1)
    ref = pp.normalize(pp.crop_resize(jnp.asarray(unit), spec.box, 24), spec)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # Values beyond [-1, 1] are clipped: a saturated image stays at the normalised 1.0.
    sat = np.asarray(f(jnp.full((1, 64, 64, 3), 3.0), spec))
    np.testing.assert_allclose(sat[0, 5, 5], (1 - np.array(pp.IMAGENET_MEAN))
                               / np.array(pp.IMAGENET_STD), rtol=1e-5)


def test_preprocess_any_resolution():
    """Boxes are fractions: the same face at 64 and 128 px preprocesses alike."""
    y, x = np.meshgrid(np.linspace(-1, 1, 128), np.linspace(-1, 1, 128), indexing="ij")
    big = np.stack([x, y, x * y], -1)[None].astype(np.float32)
    small = np.asarray(jax.image.resize(big, (1, 64, 64, 3), "linear", antialias=True))
    spec = pp.Preprocess.deepface(size=16)
    a = np.asarray(pp.preprocess(jnp.asarray(big), spec))
    b = np.asarray(pp.preprocess(jnp.asarray(small), spec))
    np.testing.assert_allclose(a, b, atol=2e-2)
    with pytest.raises(ValueError, match="NHWC RGB"):
        pp.preprocess(jnp.zeros((1, 3, 64, 64)), spec)
