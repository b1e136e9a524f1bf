"""pHash comes from ``imagehash``; the hashes the bot's store already holds, written by the hand-made recipe it
replaced, still catch the same photo sent again."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps
from skimage import data

from pipeline.selfies.intake import IntakeRules
from pipeline.selfies.phash import hamming, phash

PHOTOS = ("astronaut", "chelsea", "coffee")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer)


# What phones and chat apps do to a photo on its way: the first three are the same shot sent again.
TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "original": lambda image: image,
    "recompressed": lambda image: _jpeg(image, 40),
    "half size": lambda image: image.resize((image.width // 2, image.height // 2)),
    "quarter size": lambda image: image.resize((image.width // 4, image.height // 4), Image.Resampling.BILINEAR),
    "brighter": lambda image: ImageEnhance.Brightness(image).enhance(1.2),
    "rotated 3 degrees": lambda image: image.rotate(3),
    "cropped": lambda image: image.crop((10, 10, image.width - 10, image.height - 10)),
    "mirrored": ImageOps.mirror,
}
RESENT = ("original", "recompressed", "half size")


def _stored_recipe(image: Image.Image) -> int:
    """The hash the store's rows were written with before ``imagehash``: the sign of the 8x8 lowest frequencies of
    cv2's orthonormal DCT of the 32x32 LANCZOS greyscale against their median, row-major, first bit highest."""
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float32)
    low = cv2.dct(grey)[:8, :8]
    bits = (low > np.median(low)).flatten()
    return int("".join("1" if bit else "0" for bit in bits), 2)


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS}


def test_library_hash_equals_the_stored_recipe_bit_for_bit_but_one(photos: dict[str, Image.Image]) -> None:
    distances = {
        (name, change): hamming(phash(transform(photo)), _stored_recipe(transform(photo)))
        for name, photo in photos.items()
        for change, transform in TRANSFORMS.items()
    }
    # The stored recipe normalised its DCT (orthonormal, cv2), imagehash does not (scipy.fftpack): the first row and
    # column of the 8x8 weigh sqrt(2) more against the median, which can swap one pair of bits around it. Here it
    # does so once; over 13 of scikit-image's photos and these 8 changes, 3 of 104 pairs differ, each by 2 bits.
    assert distances == {key: 2 if key == ("chelsea", "mirrored") else 0 for key in distances}


def test_a_photo_hashed_by_the_stored_recipe_is_still_refused_when_sent_again(photos: dict[str, Image.Image]) -> None:
    repeat = IntakeRules().duplicate_max_distance
    stored = {name: _stored_recipe(photo) for name, photo in photos.items()}
    for name, photo in photos.items():
        for change in RESENT:
            sent = phash(TRANSFORMS[change](photo))
            assert hamming(sent, stored[name]) <= repeat, (name, change)
            others = [hamming(sent, stored[other]) for other in PHOTOS if other != name]
            assert min(others) > 3 * repeat, (name, change, others)  # a different photo is nowhere near a repeat


def test_the_bot_hashes_without_loading_torch() -> None:
    code = (
        "import sys; from PIL import Image; from pipeline.selfies.phash import phash; "
        "phash(Image.new('RGB', (64, 64), 'white')); print('torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "False"
