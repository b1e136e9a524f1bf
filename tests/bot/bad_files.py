"""Bad (and oddly named good) files for the bad-input table: each made from real bytes a user could send."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

from PIL import Image

__all__ = ["make_bad_files"]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _bomb(side: int) -> bytes:
    """A real decompression bomb: a valid PNG of ``side``x``side`` black pixels, a few dozen KB on disk."""
    squeeze = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    idat = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    return _png(side, side, idat)


def _gif_canvas(width: int, height: int) -> bytes:
    """A valid one-pixel GIF whose header claims a ``width``x``height`` canvas."""
    data = bytearray(_encoded(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_bad_files(folder: Path, selfie: Path) -> dict[str, Path]:
    """Write every file of the table into ``folder``; keys are the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    good = selfie.read_bytes()
    with Image.open(selfie) as opened:
        photo = opened.convert("RGB")
    png = _encoded(photo, "PNG")
    frames = [photo, photo.rotate(5), photo.rotate(-5)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    contents = {
        "resume.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
        "notes.jpg": "Just text, named like a photo. ünïcödé\n".encode() * 20,
        "empty.jpg": b"",
        "cut.jpg": good[: len(good) // 2],
        "cut.png": png[: len(png) // 3],
        "header-only.jpg": good[:20],
        "bomb.png": _bomb(8_000),  # 64 megapixels, over the 40 MP limit, ~60 KB
        "huge.png": _png(100_000, 100_000, zlib.compress(b"\x00" * 1024)),  # 10 gigapixels claimed
        "huge.gif": _gif_canvas(65_535, 65_535),  # 4.3 gigapixels
        "strip.gif": _gif_canvas(300, 65_535),  # under the pixel limit, but longer than a JPEG can be
        "noise.jpg": random.Random(7).randbytes(4096),
        "program.png": b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200 + b"This program cannot be run in DOS mode.",
        "vector.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512"><circle r="9"/></svg>',
        "dot.png": _encoded(Image.new("RGB", (1, 1), "red"), "PNG"),
        "animated.gif": gif.getvalue(),
        "photo.txt": good,
        "really-png.jpg": png,
    }
    paths = {}
    for name, data in contents.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    # Over the platforms' 50 MB upload limit: a sparse file, so writing it costs nothing.
    paths["video.mp4"] = folder / "video.mp4"
    with paths["video.mp4"].open("wb") as handle:
        handle.truncate(51 * 1024 * 1024)
    return paths
