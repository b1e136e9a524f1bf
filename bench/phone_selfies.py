"""``python -m bench.phone_selfies SOURCE DEST``: each photo in SOURCE as a phone camera's 12 MP portrait photo
(3024x4032) in DEST, as the bot stores a selfie (RGB JPEG, quality 95, no metadata).

The benchmarks' selfies are small face crops, which decode and crop in a few milliseconds; a user's phone sends
12 MP. Upscaled, with a little per-pixel noise so the JPEG holds detail as a camera's does, they cost what a real
photo costs to decode and crop (the pixels' content does not change the GPU's work).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["PHONE_SIZE", "main", "phone_photo"]

PHONE_SIZE = (3024, 4032)  # a 12 MP phone camera's portrait photo
NOISE = 6.0  # standard deviation, in 0-255 pixel units


def phone_photo(source: Path, seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    from pipeline.selfies.decoding import JPEG_QUALITY

    with Image.open(source) as opened:
        photo = opened.convert("RGB").resize(PHONE_SIZE, Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0.0, NOISE, (PHONE_SIZE[1], PHONE_SIZE[0], 3))
    pixels = np.clip(np.asarray(photo, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.phone_selfies", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="a folder of photos (.jpg, .jpeg, .png)")
    parser.add_argument("dest", type=Path, help="the folder to write the phone-sized JPEGs into (created)")
    args = parser.parse_args(argv)

    sources = sorted(path for path in args.source.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not sources:
        raise SystemExit(f"{args.source} holds no .jpg, .jpeg or .png photos; name a folder of selfies.")
    args.dest.mkdir(parents=True, exist_ok=True)
    for number, source in enumerate(sources):
        (args.dest / f"{source.stem}.jpg").write_bytes(phone_photo(source, number))
    print(f"{len(sources)} phone-sized selfies ({PHONE_SIZE[0]}x{PHONE_SIZE[1]}) in {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
