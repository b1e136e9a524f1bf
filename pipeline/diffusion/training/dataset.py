"""Selfies as VAE latents, encoded once before training and grouped into aspect-ratio buckets.

Each image is cropped to the nearest of a few portrait, square and landscape shapes of the model's native area
(the same sizes generation renders at), so nothing is squashed and little is cut. The VAE's latent distribution
(mean and standard deviation) is cached, and the loop draws a fresh latent from it each step, exactly as encoding
the image again each step would, for a fraction of the cost.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

__all__ = [
    "BUCKET_ASPECTS",
    "ENCODE_CHUNK",
    "LatentBucket",
    "PHONE_BUCKET",
    "TrainingSet",
    "WARM_UP_ORDER",
    "bucket_size",
    "crop_to",
    "decode_for_training",
    "encode_training_set",
    "render_class_images",
    "to_device",
]

# (width, height) shapes; 1:1 first, so square photos keep the model's own square size.
BUCKET_ASPECTS = ((1, 1), (4, 5), (5, 4), (3, 4), (4, 3))
# The order a worker's training warm-up compiles the buckets in: what torch compiles for the first shape is specialised
# to its size (later ones share graphs with the sizes dynamic), so a phone's 3:4 portrait photo, the bucket most
# selfies fall in, comes first. Compiled by "blocks", the transformer blocks take the token count as a size from the
# first shape on (``slot.dynamic_token_count``); by "regions", whose compiled glue feeds them, they do not.
PHONE_BUCKET = (3, 4)
WARM_UP_ORDER = (PHONE_BUCKET, *(aspect for aspect in BUCKET_ASPECTS if aspect != PHONE_BUCKET))
# Crops the VAE encodes at once: a 1024px encode is memory-hungry, and larger chunks gained little
# (``bench.benchmark_encoding`` times others, BENCHMARKS.md 2026-12-04 fourth session).
ENCODE_CHUNK = 4


@dataclass(frozen=True)
class LatentBucket:
    """Images cropped to one (width, height), and their mirror images, as unscaled VAE latent distributions."""

    size: tuple[int, int]
    mean: Any  # (count, channels, height / f, width / f), float32
    std: Any
    time_ids: Any  # SDXL's size conditioning: (original h, w, crop top, left, target h, w); klein ignores it
    scaling_factor: float

    @property
    def count(self) -> int:
        return int(self.mean.shape[0])

    def sample(self, picks: Any, generator: Any) -> Any:
        """Scaled latents of images ``picks``, one draw from each one's distribution (as ``latent_dist.sample``).

        ``picks`` and ``generator`` are on the CPU: the draw is made there (the same numbers on any device) and
        reaches the device without the host waiting (``to_device``)."""
        import torch

        picks = to_device(picks, self.mean.device)
        mean, std = self.mean[picks], self.std[picks]
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return (mean + std * to_device(noise, mean.device)) * self.scaling_factor


def to_device(tensor: Any, device: Any) -> Any:
    """A CPU ``tensor`` on ``device``; on CUDA through page-locked memory, without the host waiting.

    A copy from ordinary (pageable) memory waits until the GPU has finished everything queued before it, so five of
    them a training step keep the host from queuing the next step while the GPU runs this one. On an H200 at batch 8
    removing them measured no change (17.7 image-steps/s either way, BENCHMARKS.md 2026-12-03: the GPU, not the host,
    was the bound there); they are gone so a faster step cannot start waiting on them. torch's pinned allocator keeps
    the buffer until the copy is done.
    """
    import torch

    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


@dataclass(frozen=True)
class TrainingSet:
    buckets: tuple[LatentBucket, ...]

    def pick_bucket(self, generator: Any) -> LatentBucket:
        """A bucket drawn in proportion to its size (no draw at all when there is only one)."""
        import torch

        if len(self.buckets) == 1:
            return self.buckets[0]
        weights = torch.tensor([float(bucket.count) for bucket in self.buckets])
        return self.buckets[int(torch.multinomial(weights, 1, generator=generator))]


def encode_training_set(
    pipe: Any,
    images: Sequence[Image.Image],
    resolution: int | None = None,
    *,
    crop_centers: Sequence[tuple[float, float]] | None = None,
) -> TrainingSet:
    """Crop each image to its bucket (around its ``crop_centers`` entry, else the centre), mirror it, and encode.

    ``resolution`` is the side of the square whose area every bucket keeps; None means the model's own size.
    """
    import torch

    # 1. Check inputs.
    if not images:
        raise ValueError("encode_training_set needs at least one image, but got none.")
    if crop_centers is not None and len(crop_centers) != len(images):
        raise ValueError(f"crop_centers has {len(crop_centers)} entries for {len(images)} images; give one per image.")
    centers = list(crop_centers) if crop_centers is not None else [(0.5, 0.5)] * len(images)
    if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in centers):
        raise ValueError(f"crop_centers must be normalised (x, y) pairs in [0, 1], but are {centers!r}.")

    # 2. Crop each to its nearest aspect's size, in threads (Pillow lets go of the GIL while it resizes), and group.
    def crop(image: Image.Image, center: tuple[float, float]) -> tuple[tuple[int, int], Image.Image]:
        size = bucket_size(pipe, image.width, image.height, resolution)
        return size, crop_to(image.convert("RGB"), size, center)

    groups: dict[tuple[int, int], list[Image.Image]] = {}
    with ThreadPoolExecutor(_threads(len(images))) as pool:
        for size, cropped in pool.map(crop, images, centers):
            groups.setdefault(size, []).extend([cropped, ImageOps.mirror(cropped)])

    # 3. Encode each bucket.
    buckets = []
    for (width, height), crops in groups.items():
        mean, std = _encode(pipe, crops)
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)
        # FLUX.2's VAE has no scaling factor: its latents are normalised by a batch norm, after patching.
        scaling = float(getattr(pipe.vae.config, "scaling_factor", None) or 1.0)
        buckets.append(LatentBucket((width, height), mean, std, time_ids, scaling))
    return TrainingSet(tuple(buckets))


def bucket_size(pipe: Any, width: int, height: int, resolution: int | None = None) -> tuple[int, int]:
    """The (width, height) a ``width`` x ``height`` photo is cropped to: the size of the bucket aspect nearest its
    own, in log space (so 4:5 and 5:4 are equally far from 1:1). ``resolution`` is ``encode_training_set``'s."""
    from pipeline.diffusion.generation import headshot_size

    ratio = math.log(width / height)
    aspect = min(BUCKET_ASPECTS, key=lambda wh: abs(ratio - math.log(wh[0] / wh[1])))
    return headshot_size(pipe, aspect, native=resolution)


def decode_for_training(pipe: Any, photos: Sequence[bytes], resolution: int | None = None) -> list[Image.Image]:
    """Stored photos (the bot's JPEGs, or any format Pillow opens) as RGB images no smaller than their aspect
    bucket's crop needs, decoded in threads.

    A JPEG decodes at 1/2, 1/4 or 1/8 of its size where that still covers the bucket (libjpeg's DCT scaling): a
    phone photo then decodes and crops several times faster, to nearly the same crop (BENCHMARKS.md, 2026-12-04
    fourth session; ``tests/pipeline/test_training_recipe.py`` bounds the difference). ``resolution`` is
    ``encode_training_set``'s.
    """

    def decode(data: bytes) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        width, height = bucket_size(pipe, image.width, image.height, resolution)
        # The largest bucket-shaped region is ``scale`` times the bucket: decoding that much smaller still covers it.
        scale = min(image.width / width, image.height / height)
        if scale > 1:
            image.draft("RGB", (math.ceil(image.width / scale), math.ceil(image.height / scale)))
        return image.convert("RGB")

    with ThreadPoolExecutor(_threads(len(photos))) as pool:
        return list(pool.map(decode, photos))


def _threads(images: int) -> int:
    return max(1, min(images, os.cpu_count() or 1))


def crop_to(image: Image.Image, size: tuple[int, int], center: tuple[float, float] = (0.5, 0.5)) -> Image.Image:
    """The largest ``size``-shaped region around ``center`` (normalised x, y; kept inside the image), resized."""
    width, height = size
    scale = min(image.width / width, image.height / height)
    crop_w, crop_h = min(width * scale, image.width), min(height * scale, image.height)
    left = max(min(center[0] * image.width - crop_w / 2, image.width - crop_w), 0.0)
    top = max(min(center[1] * image.height - crop_h / 2, image.height - crop_h), 0.0)
    return image.resize(size, Image.Resampling.LANCZOS, box=(left, top, left + crop_w, top + crop_h))


def _encode(pipe: Any, crops: list[Image.Image]) -> tuple[Any, Any]:
    """Float32 (mean, std) of the VAE's latent distribution of each crop, on the pipeline's device."""
    import numpy as np
    import torch

    vae = pipe.vae
    # SDXL's VAE overflows in float16 (config ``force_upcast``); encode in float32 as the pipeline decodes.
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    original_dtype = vae.dtype
    if upcast:
        vae.to(torch.float32)
    try:
        # Bytes to the device, scaled there: the same float32 maths as on the host, whose 20 full-size float copies
        # took 0.56 s of a 2-core CPU (BENCHMARKS.md, 2026-12-04 third session). NCHW, the encoder's layout on a
        # GPU worker (``acceleration.gpu_layout``).
        pixels = [torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1) for crop in crops]
        means, stds = [], []
        with torch.no_grad():
            for start in range(0, len(pixels), ENCODE_CHUNK):
                batch = to_device(torch.stack(pixels[start : start + ENCODE_CHUNK]), vae.device)
                batch = (batch.float() / 127.5 - 1.0).to(vae.dtype)
                distribution = vae.encode(batch).latent_dist
                means.append(distribution.mean.float())
                stds.append(distribution.std.float())
        return torch.cat(means), torch.cat(stds)
    finally:
        if upcast:
            vae.to(original_dtype)


def render_class_images(pipe: Any, prompt: str, count: int, *, seed: int = 0, steps: int = 25) -> list[Image.Image]:
    """The base model's own renders of the class prompt, for prior preservation; the same seed gives the same set."""
    import torch

    if count < 1:
        raise ValueError(f"render_class_images needs a count of at least 1, but got {count}.")
    images: list[Image.Image] = []
    for start in range(0, count, 4):
        batch = min(4, count - start)
        generators = [torch.Generator("cpu").manual_seed(seed + start + index) for index in range(batch)]
        images.extend(pipe([prompt] * batch, num_inference_steps=steps, generator=generators).images)
    return images
