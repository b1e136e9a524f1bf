"""The face pass: a face rendered small comes out vague, so it is rendered again, large, and blended back.

The face is found (``pipeline.selfies.faces``), cropped square with a margin, re-rendered at the model's native
size by image-to-image with the user's LoRA at moderate strength, resized back and blended in through a feathered
mask: everything outside the crop keeps its pixels exactly, and the crop's border fades in without a seam.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from pipeline.diffusion.generation import headshot_size
from pipeline.diffusion.img2img import render_from_images, user_lora
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.styles import Style
from pipeline.subject import Subject

if TYPE_CHECKING:
    from pipeline.selfies.faces import Face, FaceAnalyzer

__all__ = [
    "FACE_LORA_SCALE",
    "FACE_STRENGTH",
    "blend_back",
    "crops_to_pass",
    "face_crop",
    "face_pass",
    "faces_to_pass",
    "feathered_mask",
]

FACE_STRENGTH = 0.35  # re-render detail, keep the expression and the pose
FACE_LORA_SCALE = 0.7  # the likeness, without the full LoRA's tendency to overcook a close-up
FACE_MARGIN = 0.5  # the crop reaches this share of the face's size beyond it on every side: hair, chin, ears
FEATHER = 0.15  # the blend fades in over this share of the crop's side


def faces_to_pass(
    images: Sequence[Image.Image], faces: FaceAnalyzer, *, only_below: float | None = None
) -> dict[int, tuple[int, int, int, int]]:
    """The crop to re-render in each image that needs the face pass, by the image's index: around its most confident
    face, unless (with ``only_below``) that face is at least that share of the image's width already. CPU only."""
    return crops_to_pass(images, [faces.faces(image, large_first=True) for image in images], only_below=only_below)


def crops_to_pass(
    images: Sequence[Image.Image], found: Sequence[Sequence[Face]], *, only_below: float | None = None
) -> dict[int, tuple[int, int, int, int]]:
    """``faces_to_pass`` from the faces already found in each image (``FaceAnalyzer.faces``, most confident first)."""
    crops: dict[int, tuple[int, int, int, int]] = {}
    for index, (image, faces) in enumerate(zip(images, found, strict=True)):
        if not faces:
            continue
        box = faces[0].box
        if only_below is not None and box[2] >= only_below * image.width:
            continue
        crops[index] = face_crop(image.size, box)
    return crops


def face_crop(
    size: tuple[int, int], box: tuple[int, int, int, int], margin: float = FACE_MARGIN
) -> tuple[int, int, int, int]:
    """A square (left, top, right, bottom) around face ``box`` with ``margin``, moved (and shrunk) to fit ``size``."""
    width, height = size
    left, top, face_w, face_h = box
    side = min(round(max(face_w, face_h) * (1 + 2 * margin)), width, height)
    center_x, center_y = left + face_w / 2, top + face_h / 2
    crop_left = min(max(round(center_x - side / 2), 0), width - side)
    crop_top = min(max(round(center_y - side / 2), 0), height - side)
    return crop_left, crop_top, crop_left + side, crop_top + side


def feathered_mask(side: int, feather: float = FEATHER) -> Image.Image:
    """An ``L`` mask of ``side`` pixels: 0 on the border, 255 inside, a smooth ramp between."""
    ramp = max(1, round(side * feather))
    edge = np.minimum(np.arange(side), np.arange(side)[::-1])  # pixels to the nearest border, per row or column
    distance = np.minimum.outer(edge, edge)
    alpha = np.clip(distance / ramp, 0.0, 1.0)
    alpha = alpha * alpha * (3 - 2 * alpha)  # smoothstep: no visible kink where the ramp starts or ends
    return Image.fromarray(np.round(alpha * 255).astype(np.uint8), mode="L")


def blend_back(image: Image.Image, rendered: Image.Image, crop: Sequence[int]) -> Image.Image:
    """``image`` with ``rendered`` resized into ``crop`` through a feathered mask; the rest untouched."""
    left, top, right, bottom = crop
    side = right - left
    patch = rendered.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
    result = image.convert("RGB").copy()
    original = result.crop((left, top, right, bottom))
    result.paste(Image.composite(patch, original, feathered_mask(side)), (left, top))
    return result


def face_pass(
    pipe: Any,
    images: Sequence[Image.Image],
    faces: FaceAnalyzer,
    style: Style,
    *,
    seeds: Sequence[int],
    only_below: float | None = None,
    lora_path: Path | None = None,
    lora_slot: LoraSlot | None = None,
    steps: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    subject: Subject | None = None,
    crops: dict[int, tuple[int, int, int, int]] | None = None,
) -> list[Image.Image]:
    """Each image with its most confident face re-rendered; unchanged where no face is found, or (with
    ``only_below``) where the face is at least that share of the image's width already. ``crops``: what
    ``faces_to_pass`` found for ``images`` already (a worker looks on the host before it takes the GPU)."""
    # 1. Find the faces worth a pass.
    if crops is None:
        crops = faces_to_pass(images, faces, only_below=only_below)
    if not crops:
        return list(images)

    # 2. Render every crop at the model's native square size, in one go with the LoRA at moderate strength.
    native = headshot_size(pipe, (1, 1))
    sources = [images[index].crop(crops[index]).resize(native, Image.Resampling.LANCZOS) for index in crops]
    with user_lora(pipe, lora_path, lora_slot, scale=FACE_LORA_SCALE):
        rendered = render_from_images(
            pipe,
            sources,
            style,
            strength=FACE_STRENGTH,
            seeds=[seeds[index] for index in crops],
            steps=steps,
            batch_size=1,  # one shape for a warm worker to compile, however many faces a request has
            should_stop=should_stop,
            subject=subject,
        )

    # 3. Blend each back into its image.
    result = list(images)
    for index, generated in zip(crops, rendered, strict=True):
        result[index] = blend_back(images[index], generated.image, crops[index])
    return result
