"""Image helpers: uint8 conversion (NVIDIA's), contact sheets, encoding."""

import io

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxfair.io import images as imlib


def test_to_uint8_matches_nvidia_formula():
    x = jnp.asarray([-1.5, -1.0, -0.0039, 0.0, 0.5, 1.0, 1.2])
    want = np.clip(np.floor(np.asarray(x) * 127.5 + 128), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(imlib.to_uint8(x)), want)
    assert want[0] == 0 and want[-1] == 255 and want[3] == 128


def test_contact_sheet_layout():
    images = np.stack([np.full((4, 5, 3), v, np.uint8) for v in (10, 20, 30)])
    sheet = imlib.contact_sheet(images, cols=2, pad=1)
    assert sheet.shape == (2 * 5 + 1, 2 * 6 + 1, 3) and sheet.dtype == np.uint8
    assert (sheet[1:5, 1:6] == 10).all() and (sheet[1:5, 7:12] == 20).all()
    assert (sheet[6:10, 1:6] == 30).all()
    assert (sheet[6:10, 7:12] == 255).all()  # the empty cell
    assert (sheet[0] == 255).all()  # padding


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_encode_round_trip(fmt):
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(imlib.encode(img, fmt))))
    assert back.shape == (8, 8, 3)
    if fmt == "png":
        np.testing.assert_array_equal(back, img)
    with pytest.raises(ValueError, match="format"):
        imlib.encode(img, "gif")
