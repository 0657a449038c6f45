"""Contact sheets: a batch of images tiled into one uint8 picture (host-side, numpy)."""

from __future__ import annotations

import numpy as np


def contact_sheet(images, cols: int) -> np.ndarray:
    """Tile images [N, H, W, 3] in [-1, 1] row-major into a uint8 array [rows*H, cols*W, 3].

    ``rows = ceil(N / cols)``; cells past the last image stay black. Values outside [-1, 1]
    are clipped.
    """
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected images [N, H, W, 3], got shape {x.shape}")
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    n, h, w, _ = x.shape
    rows = -(-n // cols)
    pixels = np.round((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    grid = np.zeros((rows * cols, h, w, 3), np.uint8)
    grid[:n] = pixels
    return grid.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
