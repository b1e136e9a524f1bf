"""Images made to fit Discord's upload limit: a PNG over it is re-encoded as JPEG, smaller until it fits."""

from __future__ import annotations

import io

from PIL import Image

from bot.core.types import OutgoingImage

__all__ = ["fit_upload"]

_QUALITIES = (92, 85, 75, 65)


def fit_upload(image: OutgoingImage, limit: int) -> tuple[OutgoingImage, bool]:
    """``(image, re-encoded?)``: the image as it is when under ``limit`` bytes, else a JPEG copy that fits.

    Raises ``ValueError`` naming the sizes when even a downscaled JPEG does not fit (a limit far below any photo).
    """
    if len(image.data) <= limit:
        return image, False
    with Image.open(io.BytesIO(image.data)) as opened:
        picture = opened.convert("RGB")
    stem = image.filename.rsplit(".", 1)[0] or "headshot"
    for scale in (1.0, 0.75, 0.5):
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        scaled = picture if scale == 1.0 else picture.resize(size, Image.Resampling.LANCZOS)
        for quality in _QUALITIES:
            buffer = io.BytesIO()
            scaled.save(buffer, "JPEG", quality=quality, optimize=True)
            if buffer.tell() <= limit:
                return OutgoingImage(f"{stem}.jpg", buffer.getvalue(), image.caption), True
    raise ValueError(f"{image.filename} is {len(image.data)} bytes and no JPEG of it fits the {limit}-byte limit")
