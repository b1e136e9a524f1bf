"""Perceptual hashes (DCT pHash), so the same shot sent twice, even resized or recompressed, is recognised."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

__all__ = ["HASH_BITS", "hamming", "phash"]

HASH_BITS = 64


def phash(image: Image.Image) -> int:
    """64-bit pHash: the signs of the 8x8 lowest frequencies of a 32x32 greyscale DCT, against their median.

    The same recipe as ``imagehash.phash``: low frequencies survive resizing, JPEG and small colour changes.
    """
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float32)
    low = cv2.dct(grey)[:8, :8]
    bits = (low > np.median(low)).flatten()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hamming(first: int, second: int) -> int:
    """How many of the 64 bits differ: 0 for the same photo, ~30 for unrelated ones."""
    return (first ^ second).bit_count()
