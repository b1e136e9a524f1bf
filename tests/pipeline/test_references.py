"""Headshots from the selfies themselves (klein's reference photos): the preview's pipeline half."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.diffusion.generation import generate_headshots
from pipeline.diffusion.references import MAX_REFERENCES, reference_crops, render_from_references
from pipeline.styles import STYLES
from pipeline.subject import Subject

STEPS = 2


def test_references_are_square_face_centred_crops_the_pipeline_accepts(
    flux2_pipe: Any, selfie_images: list[Image.Image]
) -> None:
    photo = selfie_images[0]
    crops = reference_crops(flux2_pipe, [photo] * 3, [(0.1, 0.1)] * 3)
    assert len(crops) == MAX_REFERENCES  # a third would cost every step its tokens
    # Flux2ImageProcessor's smallest side, since the tiny model's half side (32 px) is under it.
    assert {crop.size for crop in crops} == {(64, 64)}
    # Centred on the given face, as far as the photo allows: the top-left corner for a face up there.
    corner = photo.convert("RGB").resize((64 * photo.width // min(photo.size), 64 * photo.height // min(photo.size)))
    assert np.abs(np.asarray(crops[0], np.float32) - np.asarray(corner.crop((0, 0, 64, 64)), np.float32)).mean() < 8
    with pytest.raises(ValueError, match="centers has 1 entries for 2 selfies"):
        reference_crops(flux2_pipe, [photo, photo], [(0.5, 0.5)])


def test_a_render_from_references_shows_them_and_keeps_seeds_per_image(
    flux2_pipe: Any, selfie_images: list[Image.Image]
) -> None:
    crops = reference_crops(flux2_pipe, selfie_images[:2])
    style = STYLES["linkedin"]
    both = render_from_references(flux2_pipe, crops, style, count=2, seed=7, steps=STEPS)
    second = render_from_references(flux2_pipe, crops, style, count=1, seed=8, steps=STEPS)
    plain = generate_headshots(flux2_pipe, style, count=1, seed=7, steps=STEPS)
    assert [image.image.size for image in both] == [(56, 72), (56, 72)]
    # Image i comes from seed + i whatever its batch, as every render does (batched float sums may round one
    # level apart).
    assert np.abs(np.asarray(both[1].image, np.float32) - np.asarray(second[0].image, np.float32)).max() <= 1
    # The references are read: the same seed without them is another image (the random tiny model attends to them
    # faintly, but far above the batch rounding above, ~1e-4 per pixel).
    assert np.abs(np.asarray(both[0].image, np.float32) - np.asarray(plain[0].image, np.float32)).mean() > 0.05


def test_the_prompt_names_the_person_in_the_photos_without_the_identifier() -> None:
    phrase = Subject("woman", "30s").reference_phrase()
    assert phrase == "the woman in her thirties shown in the reference photos"
    assert "sks" not in STYLES["studio"].render_sentence(phrase)


def test_sdxl_refuses_references_by_name(pipe: Any, selfie_images: list[Image.Image]) -> None:
    with pytest.raises(ValueError, match="only FLUX.2 \\[klein\\] checkpoints"):
        render_from_references(pipe, [selfie_images[0]], STYLES["linkedin"], count=1, seed=1)
