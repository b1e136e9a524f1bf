"""Perceptual hashes (DCT pHash), so the same shot sent twice, even resized or recompressed, is recognised."""

from __future__ import annotations

import imagehash
from PIL import Image

__all__ = ["HASH_BITS", "hamming", "phash"]

HASH_BITS = 64


def phash(image: Image.Image) -> int:
    """``imagehash.phash`` as a 64-bit int (row-major bits, first bit highest), the form the bot's store keeps."""
    return int(str(imagehash.phash(image)), 16)


def hamming(first: int, second: int) -> int:
    """How many of the 64 bits differ: 0 for the same photo, ~30 for unrelated ones."""
    return (first ^ second).bit_count()
