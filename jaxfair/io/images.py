"""Image conversions and file output shared by the entry points."""

from __future__ import annotations

import io

import jax.numpy as jnp
import numpy as np

FORMATS = ("png", "jpg")


def to_uint8(images: jnp.ndarray) -> jnp.ndarray:
    """Generator range -> uint8, as NVIDIA: ``clip(x * 127.5 + 128, 0, 255)``.

    Args:
      images: [..., H, W, C] float, about [-1, 1].
    """
    return jnp.clip(jnp.floor(images * 127.5 + 128), 0, 255).astype(jnp.uint8)


def contact_sheet(images: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    """Tiles uint8 images [N, H, W, C] into one [rows*(H+pad)+pad, cols*(W+pad)+pad, C] image."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    rows = -(-n // cols)
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        sheet[y:y + h, x:x + w] = im
    return sheet


def encode(image: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
    """Encodes one uint8 image [H, W, 3] as PNG or JPEG bytes."""
    from PIL import Image

    if fmt not in FORMATS:
        raise ValueError(f"image format must be one of {FORMATS}, got {fmt!r}")
    buf = io.BytesIO()
    pil = Image.fromarray(np.asarray(image))
    if fmt == "png":
        pil.save(buf, format="PNG")
    else:
        pil.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
