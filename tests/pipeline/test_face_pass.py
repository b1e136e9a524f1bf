"""The face pass: only the feathered square around the face changes, sizes stay exact, no face means no change."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from pipeline.diffusion.face_pass import face_crop, face_pass, feathered_mask
from pipeline.selfies.faces import FaceAnalyzer
from pipeline.styles import STYLES
from tests.pipeline.conftest import RENDER_STEPS


def test_only_the_face_crop_changes_and_the_size_stays(
    tiny_model: Any, astronaut: Image.Image, faces: FaceAnalyzer, second_lora: Any
) -> None:
    # A wide picture with the face in one corner: the crop must stay inside it and leave the rest alone.
    picture = Image.new("RGB", (700, 520), (40, 90, 60))
    picture.paste(astronaut.resize((360, 360)), (0, 0))
    face = faces.faces(picture, large_first=True)[0]  # as the face pass searches a render
    slot = tiny_model.lora_slot
    [result] = face_pass(
        tiny_model.pipe,
        [picture],
        faces,
        STYLES["studio"],
        seeds=[5],
        lora_path=second_lora.lora_path,
        lora_slot=slot,
        steps=RENDER_STEPS,
    )
    assert result.size == picture.size and result.mode == "RGB"
    left, top, right, bottom = face_crop(picture.size, face.box)
    assert right - left == bottom - top and left >= 0 and top >= 0 and right <= 700 and bottom <= 520
    before, after = np.asarray(picture, dtype=np.int16), np.asarray(result, dtype=np.int16)
    outside = np.ones(before.shape[:2], dtype=bool)
    outside[top:bottom, left:right] = False
    assert np.array_equal(before[outside], after[outside])
    assert np.abs(before[top:bottom, left:right] - after[top:bottom, left:right]).mean() > 1.0
    assert slot.active is None  # the LoRA left the slot


def test_no_face_or_a_face_big_enough_leaves_the_image_as_it_was(
    pipe: Any, astronaut: Image.Image, faces: FaceAnalyzer
) -> None:
    blank = Image.new("RGB", (96, 120), (200, 180, 160))
    close_up = astronaut.resize((256, 256))
    out = face_pass(pipe, [blank, close_up], faces, STYLES["linkedin"], seeds=[1, 2], only_below=0.1, steps=1)
    assert out[0] is blank and out[1] is close_up


def test_the_mask_is_zero_on_its_border_and_full_inside() -> None:
    mask = np.asarray(feathered_mask(100))
    assert mask.shape == (100, 100)
    assert mask[0].max() == 0 and mask[:, 0].max() == 0 and mask[-1].max() == 0 and mask[:, -1].max() == 0
    assert mask[50, 50] == 255
