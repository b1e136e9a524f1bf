"""PNG files of a request's headshots, each image compressed on several cores at once.

The encoding sits on a request's critical path: the GPU has finished and the user waits for the files. Pillow's
encoder compresses an image on one core and tries PNG's five row filters on every row; a request's four 928x1152
headshots took 0.23 s that way on an H200 host (BENCHMARKS.md, 2026-12-02 fourth session). Here every row gets
PNG's "Up" filter (the row minus the row above: one numpy subtraction per image; on photos the file comes out within
a few percent of Pillow's choice), and the filtered rows are cut into strips that zlib deflates in threads (zlib
lets go of the GIL), every strip but the last ending on a sync flush, so the pieces join into one valid zlib stream
(pigz's method). The result is an ordinary 8-bit RGB PNG that every decoder reads.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

__all__ = ["encode_pngs"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
UP_FILTER = 2  # PNG filter type 2: each byte minus the byte above it
ZLIB_HEADER = b"\x78\x01"  # deflate with a 32 KiB window, "fastest" flag, header checksum included
MIN_STRIP_ROWS = 64  # below this a strip's fresh dictionary costs more compression than its thread saves time


def encode_pngs(images: Sequence[Image.Image], *, level: int = 1, threads: int | None = None) -> list[bytes]:
    """``images`` as PNG files (RGB), in order; ``threads`` (default: one per CPU core) deflate their strips.

    ``level`` is zlib's (1, the default: a third of level 6's time for ~15% larger files, which the chat platforms
    recompress anyway).
    """
    if not 0 <= level <= 9:
        raise ValueError(f"level must be a zlib level from 0 to 9, but is {level!r}.")
    if not images:
        return []
    threads = threads or os.cpu_count() or 1
    rows = [_filtered_rows(image) for image in images]
    strips_per_image = max(1, math.ceil(threads / len(images)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pieces = [
            [pool.submit(_deflate, strip, level, last=index == len(strips) - 1) for index, strip in enumerate(strips)]
            for strips in (_strips(image_rows, strips_per_image) for image_rows in rows)
        ]
        return [
            _png(image.width, image.height, image_rows, [piece.result() for piece in image_pieces])
            for image, image_rows, image_pieces in zip(images, rows, pieces, strict=True)
        ]


def _filtered_rows(image: Image.Image) -> np.ndarray:
    """The image's rows as PNG stores them: a filter-type byte, then the Up-filtered RGB bytes."""
    pixels = np.asarray(image.convert("RGB") if image.mode != "RGB" else image, dtype=np.uint8)
    pixels = pixels.reshape(image.height, image.width * 3)
    rows = np.empty((image.height, 1 + image.width * 3), dtype=np.uint8)
    rows[:, 0] = UP_FILTER
    rows[0, 1:] = pixels[0]  # the first row's "above" is zeros
    np.subtract(pixels[1:], pixels[:-1], out=rows[1:, 1:])  # uint8 wraps modulo 256, as the filter is defined
    return rows


def _strips(rows: np.ndarray, count: int) -> list[np.ndarray]:
    count = max(1, min(count, len(rows) // MIN_STRIP_ROWS))
    bounds = [round(index * len(rows) / count) for index in range(count + 1)]
    return [rows[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


def _deflate(strip: np.ndarray, level: int, *, last: bool) -> bytes:
    """One strip as raw deflate blocks (no zlib header or checksum: the file has one of each)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(strip.data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _png(width: int, height: int, rows: np.ndarray, pieces: list[bytes]) -> bytes:
    stream = b"".join([ZLIB_HEADER, *pieces, struct.pack(">I", zlib.adler32(rows.data))])
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, filtered, no interlace
    return b"".join([SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", stream), _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return b"".join([struct.pack(">I", len(data)), kind, data, struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))])
