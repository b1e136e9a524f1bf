"""Selfie intake: real photos come out upright and clean; broken or tiny files get a reply the user can act on."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bot.core.texts import explain
from pipeline.errors import Reason, SelfieRejected
from pipeline.selfies.decoding import MAX_PIXELS, read_selfie
from tests.said import refused


def encode(image: Image.Image, kind: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def test_a_real_photo_is_accepted_as_rgb_jpeg(astronaut_jpeg: bytes) -> None:
    selfie = read_selfie(astronaut_jpeg)
    assert (selfie.width, selfie.height) == (512, 512)
    decoded = Image.open(io.BytesIO(selfie.jpeg))
    assert decoded.format == "JPEG" and decoded.mode == "RGB" and decoded.size == (512, 512)


def test_phone_rotation_is_applied_and_metadata_removed(astronaut: Image.Image) -> None:
    # A phone stores a portrait shot as landscape pixels plus "rotate 90 degrees clockwise" in EXIF.
    landscape = astronaut.crop((0, 100, 512, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x9003] = "2024:05:01 10:00:00"  # DateTimeOriginal
    selfie = read_selfie(encode(landscape, "JPEG", exif=exif.tobytes(), quality=95))

    assert (selfie.width, selfie.height) == (300, 512)  # upright portrait, as the user saw it
    decoded = Image.open(io.BytesIO(selfie.jpeg))
    assert len(decoded.getexif()) == 0 and "exif" not in decoded.info
    expected = np.asarray(landscape.transpose(Image.Transpose.ROTATE_270), dtype=np.float32)
    assert np.abs(np.asarray(decoded, dtype=np.float32) - expected).mean() < 4.0


def test_transparent_png_and_cmyk_become_rgb(astronaut: Image.Image) -> None:
    transparent = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    selfie = read_selfie(encode(transparent, "PNG"))
    assert Image.open(io.BytesIO(selfie.jpeg)).getpixel((10, 10)) == (255, 255, 255)  # over white, not black

    cmyk = read_selfie(encode(astronaut.convert("CMYK"), "JPEG"))
    assert Image.open(io.BytesIO(cmyk.jpeg)).mode == "RGB"


def test_first_frame_of_an_animation_is_used(astronaut: Image.Image) -> None:
    frames = [astronaut.resize((300, 300)), Image.new("RGB", (300, 300), (0, 255, 0))]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    selfie = read_selfie(animated)
    red, green, blue = Image.open(io.BytesIO(selfie.jpeg)).resize((1, 1)).getpixel((0, 0))
    assert green < 200  # not the solid green second frame


def test_text_file_is_refused_as_not_a_photo() -> None:
    with refused(SelfieRejected, match="not a photo I can read") as caught:
        read_selfie(b"Dear bot, here is my selfie!\n")
    assert "JPEG, PNG, HEIC or WebP" in explain(caught.value)


def test_text_file_named_like_a_photo_is_still_refused() -> None:
    # Judged by content: the bytes of a script disguised with a JPEG-looking start.
    with refused(SelfieRejected, match="not a photo"):
        read_selfie(b"\xff\xd8\xff" + b"not really a jpeg" * 10)


def test_truncated_jpeg_asks_to_send_again(astronaut_jpeg: bytes) -> None:
    with refused(SelfieRejected, match="cut off .*send it again"):
        read_selfie(astronaut_jpeg[: len(astronaut_jpeg) // 2])


def test_tiny_image_names_its_size_and_the_minimum() -> None:
    with refused(SelfieRejected, match="only 1x1 pixels.*at least 256 pixels"):
        read_selfie(encode(Image.new("RGB", (1, 1)), "PNG"))


def test_empty_upload_is_refused() -> None:
    with refused(SelfieRejected, match="empty"):
        read_selfie(b"")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # A PNG header can claim any size: 10000x10000 is 100 MP, over the limit, in a file of a few kilobytes.
    side = 10_000
    assert side * side > MAX_PIXELS
    bomb = encode(Image.new("1", (side, side)), "PNG")
    assert len(bomb) < 100_000
    with refused(SelfieRejected, match="too large.*10000x10000"):
        read_selfie(bomb)


def test_the_bot_can_check_selfies_without_loading_torch() -> None:
    code = (
        "import sys, pipeline.selfies.decoding, pipeline.styles, pipeline.errors, pipeline.selfies.intake, "
        "pipeline.selfies.evaluate; "
        "print('torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "False"


def test_a_rejection_crosses_a_process_boundary_with_its_reason_and_params() -> None:
    """The bot checks selfies in a process pool: the verdict it gets back must still say why, in the user's words."""
    sent = SelfieRejected("2 faces", reason=Reason.SEVERAL_FACES, count=2)
    received = pickle.loads(pickle.dumps(sent))
    assert type(received) is SelfieRejected and received.params == {"count": 2}
    assert explain(received) == explain(sent) == "Two faces found: send a photo of just you."
