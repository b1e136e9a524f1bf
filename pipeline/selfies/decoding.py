"""Turning the bytes a user sent into a clean, upright RGB JPEG, or a refusal they can act on.

Pillow only: the bot process imports this to check each selfie the moment it arrives, without loading torch.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import Reason, SelfieRejected

# iPhones send HEIC; this teaches Pillow to open HEIF/HEIC by content (idempotent, so importing twice is harmless).
pillow_heif.register_heif_opener()

__all__ = ["MAX_PIXELS", "Selfie", "read_selfie"]

# Far above any phone camera (a 200 MP sensor is 2e8 only in raw mode; its JPEGs are ~12-50 MP) yet small enough
# that one decoded photo (3 bytes a pixel, ~120 MB) cannot exhaust the bot's memory.
MAX_PIXELS = 40_000_000
JPEG_QUALITY = 95
# JPEG's own limit: a longer strip (under MAX_PIXELS, e.g. 300x60000) could be decoded but never stored.
MAX_SIDE = 65_500


@dataclass(frozen=True)
class Selfie:
    """A normalized photo: upright, RGB, no metadata, JPEG-encoded."""

    jpeg: bytes
    width: int
    height: int


def read_selfie(data: bytes, *, min_side: int = 256) -> Selfie:
    """Decode ``data`` (any format Pillow reads, judged by content), check it, and return it normalized.

    Raises ``SelfieRejected`` with a message for the user when the bytes are empty, not an image, truncated,
    too large to decode safely, or smaller than ``min_side`` pixels on the shorter side.
    """
    # 1. Check inputs.
    if not data:
        raise SelfieRejected("empty file", reason=Reason.EMPTY_FILE)

    # 2. Identify by content. Pillow only reads the header here, so the size check comes before any decoding.
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than raises) between MAX_IMAGE_PIXELS and twice it; our own limit decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise _too_many_pixels(None) from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise SelfieRejected("not an image", reason=Reason.NOT_A_PHOTO) from error

    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise _too_many_pixels((width, height))
        if max(width, height) > MAX_SIDE:
            raise SelfieRejected(
                f"{width}x{height} pixels", reason=Reason.TOO_LONG_A_SIDE, width=width, height=height, limit=MAX_SIDE
            )

        # 3. Decode fully, so truncation shows up now rather than as a grey band in the generated headshots.
        try:
            image.seek(0)  # The first frame of an animated GIF/WebP/PNG.
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            if "truncated" in str(error).lower() or isinstance(error, EOFError):
                raise SelfieRejected("truncated", reason=Reason.TRUNCATED) from error
            raise SelfieRejected("undecodable", reason=Reason.NOT_A_PHOTO) from error

        # 4. Normalize: upright, RGB, and nothing carried over (EXIF GPS, ICC, comments).
        try:
            upright = ImageOps.exif_transpose(image) or image
        except (ValueError, TypeError, KeyError, OSError, SyntaxError, struct.error):
            upright = image  # Malformed EXIF: the pixels are still good, only the rotation hint is lost.
        rgb = _to_rgb(upright)

    if min(rgb.size) < min_side:
        raise SelfieRejected(
            f"{rgb.width}x{rgb.height} pixels",
            reason=Reason.TOO_SMALL,
            width=rgb.width,
            height=rgb.height,
            min_side=min_side,
        )

    # 5. Re-encode without passing exif/icc, so the stored file is only pixels.
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return Selfie(jpeg=buffer.getvalue(), width=rgb.width, height=rgb.height)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels; transparent areas become white, as a photo printed on paper would show them."""
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit and float greyscale would clip to white in a direct conversion; scale to 8 bits first.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image.convert("RGB")


def _too_many_pixels(size: tuple[int, int] | None) -> SelfieRejected:
    # Pillow's own bomb check can refuse a file before its size is known.
    where = f" ({size[0]}x{size[1]})" if size else ""
    return SelfieRejected(
        f"too many pixels{where}", reason=Reason.TOO_MANY_PIXELS, where=where, megapixels=MAX_PIXELS // 1_000_000
    )
