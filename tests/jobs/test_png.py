"""A request's PNG files, compressed in strips on several threads, decode to exactly the rendered pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bot.local.samples import astronaut_photo
from jobs.worker.png import encode_pngs


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # reads every chunk and checks the zlib stream's checksum
    return image


def test_headshot_sized_photos_and_noise_decode_to_the_same_pixels_at_about_pillows_size() -> None:
    photo = astronaut_photo().resize((928, 1152))  # a render's size, a real photo's content
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1152, 928, 3), dtype=np.uint8))
    odd = astronaut_photo().crop((3, 5, 3 + 301, 5 + 197))  # sides that no strip count divides

    files = encode_pngs([photo, noise, odd], threads=8)  # 3 strips each for the big ones

    for data, image in zip(files, [photo, noise, odd], strict=True):
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        out = decoded(data)
        assert (out.mode, out.size) == ("RGB", image.size)
        assert np.array_equal(np.asarray(out), np.asarray(image))
    pillow = io.BytesIO()
    photo.save(pillow, format="PNG", compress_level=1)
    assert len(files[0]) < 1.1 * len(pillow.getvalue())  # the Up filter on a photo: about Pillow's adaptive choice


def test_other_modes_are_stored_as_rgb_and_nothing_in_gives_nothing_out() -> None:
    gray = astronaut_photo().convert("L")
    with_alpha = astronaut_photo().convert("RGBA")

    for image in (gray, with_alpha):
        (data,) = encode_pngs([image], threads=2)
        assert np.array_equal(np.asarray(decoded(data)), np.asarray(image.convert("RGB")))
    assert encode_pngs([]) == []
    with pytest.raises(ValueError, match="level must be a zlib level from 0 to 9, but is 10"):
        encode_pngs([gray], level=10)
