"""Property-based: ``read_selfie`` on any bytes either returns a bounded, plain JPEG or raises ``SelfieRejected``."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bot.core.texts import INTERNAL_ERROR, explain
from pipeline.errors import SelfieRejected
from pipeline.selfies.decoding import MAX_PIXELS, read_selfie


def _seed(fmt: str, mode: str = "RGB", size: tuple[int, int] = (24, 20), **options: object) -> bytes:
    image = Image.new(mode, size)
    image.putdata(
        [
            (x * 7 + y * 13) % 256 if mode in ("L", "P") else ((x * 7) % 256, y * 11 % 256, 90)
            for y in range(size[1])
            for x in range(size[0])
        ]
    )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# Real files of every format Pillow reads from users, to be cut and corrupted: most random bytes are not images at
# all, so mutating real ones is what reaches the decoders, the EXIF handling and the size checks.
SEEDS = [
    _seed("JPEG"),
    _seed("JPEG", progressive=True),
    _seed("PNG"),
    _seed("PNG", mode="L"),
    _seed("GIF", mode="P"),
    _seed("WEBP"),
    _seed("BMP"),
    _seed("TIFF"),
    _seed("ICO", size=(16, 16)),
]


def _check(data: bytes) -> None:
    try:
        selfie = read_selfie(data, min_side=1)
    except SelfieRejected as rejection:
        assert explain(rejection) != INTERNAL_ERROR  # a reason the user reads
        return
    assert selfie.width * selfie.height <= MAX_PIXELS
    with Image.open(io.BytesIO(selfie.jpeg)) as stored:
        assert stored.format == "JPEG" and stored.mode == "RGB" and stored.size == (selfie.width, selfie.height)
        assert not stored.getexif()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    _check(data)


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    # Overwrite a few bytes (headers included: sizes, lengths, chunk types), then maybe cut the file short.
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted())
def test_corrupted_real_images(data: bytes) -> None:
    _check(data)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["PNG", "GIF", "BMP"]), st.integers(1, 65_535), st.integers(1, 65_535))
def test_any_claimed_size_is_checked_before_decoding(fmt: str, width: int, height: int) -> None:
    """A header may claim any size; the pixels behind it are never decoded past the limit."""
    import struct

    data = bytearray(_seed(fmt, mode="P" if fmt == "GIF" else "RGB"))
    if fmt == "PNG":
        data[16:24] = struct.pack(">II", width, height)  # IHDR (its CRC now wrong, as a forger's would be)
    elif fmt == "GIF":
        data[6:10] = struct.pack("<HH", width, height)
    else:
        data[18:26] = struct.pack("<ii", width, height)
    _check(bytes(data))
