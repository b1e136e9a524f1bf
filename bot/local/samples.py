"""Sample selfies for the demo and the tests, made from a real public-domain photo that scikit-image ships.

NASA's portrait of astronaut Eileen Collins (``skimage.data.astronaut``), cropped around her face at different
scales and offsets, mirrored, re-lit and slightly turned: the variety a real selfie set has, one real person.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageEnhance

__all__ = ["astronaut_photo", "make_sample_selfies"]

# Where OpenCV's frontal-face cascade finds the face in the 512x512 photo: centre (224, 113), about 95 px wide.
_FACE_CENTRE = (224, 113)


def astronaut_photo() -> Image.Image:
    try:
        from skimage import data
    except ImportError as error:  # the demo extra brings it; say which
        raise RuntimeError("sample selfies need scikit-image: pip install 'headshot-bot[demo]'") from error
    return Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]


def make_sample_selfies(folder: Path, count: int = 10, *, seed: int = 0) -> list[Path]:
    """Write ``count`` JPEG selfies of one real person into ``folder``; the same seed gives the same files."""
    rng = random.Random(seed)
    photo = astronaut_photo()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        # 1. A square crop around the face, 260-380 px, the face off-centre by up to 30 px.
        side = rng.randint(260, 380)
        cx = _FACE_CENTRE[0] + rng.randint(-30, 30)
        cy = _FACE_CENTRE[1] + rng.randint(-20, 40)
        left = min(max(0, cx - side // 2), photo.width - side)
        top = min(max(0, cy - side // 2), photo.height - side)
        selfie = photo.crop((left, top, left + side, top + side))
        # 2. The phone's mirror, a slight tilt, and different light.
        if number % 2:
            selfie = selfie.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        selfie = selfie.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BICUBIC, expand=False)
        selfie = ImageEnhance.Brightness(selfie).enhance(rng.uniform(0.75, 1.25))
        selfie = ImageEnhance.Contrast(selfie).enhance(rng.uniform(0.8, 1.2))
        selfie = ImageEnhance.Color(selfie).enhance(rng.uniform(0.7, 1.2))
        path = folder / f"selfie-{number + 1:02d}.jpg"
        selfie.save(path, quality=90)
        paths.append(path)
    return paths
