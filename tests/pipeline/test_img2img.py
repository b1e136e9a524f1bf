"""Rendering from an image on the loaded pipeline: variations stay near their source and an upscale doubles it. A
compiled worker serves them without compiling again: tests/jobs/test_model_setup.py (every action, bf16, the default
scope) and tests/pipeline/test_acceleration.py (a variation on a channels-last whole-UNet compile)."""

from __future__ import annotations

from typing import Any

from pipeline.diffusion.generation import generate_headshots
from pipeline.diffusion.img2img import UPSCALE_STRENGTH, VARIATION_STRENGTH, image_to_image, img2img_pipeline
from pipeline.styles import STYLES
from tests.pipeline.conftest import RENDER_STEPS
from tests.pipeline.test_generation import difference


def test_variations_share_the_weights_stay_near_the_source_and_clear_the_slot(
    tiny_model: Any, second_lora: Any
) -> None:
    pipe, slot = tiny_model.pipe, tiny_model.lora_slot
    style = STYLES["linkedin"]
    [source] = generate_headshots(pipe, style, count=1, seed=9, steps=RENDER_STEPS)
    [stranger] = generate_headshots(pipe, style, count=1, seed=900, steps=RENDER_STEPS)
    twin = img2img_pipeline(pipe)
    assert twin.unet is pipe.unet and twin.vae is pipe.vae and twin is img2img_pipeline(pipe)  # no second copy
    variants = image_to_image(
        pipe,
        source.image,
        style,
        strength=VARIATION_STRENGTH,
        count=2,
        seed=77,
        lora_path=second_lora.lora_path,
        lora_slot=slot,
        steps=RENDER_STEPS,
    )
    assert [variant.seed for variant in variants] == [77, 78]
    assert all(variant.image.size == source.image.size for variant in variants)
    assert difference(variants[0].image, variants[1].image) > 0.5  # new seeds, new details
    assert difference(variants[0].image, source.image) < difference(stranger.image, source.image)
    assert slot.active is None and not slot.merged


def test_upscale_doubles_both_sides(pipe: Any) -> None:
    [source] = generate_headshots(pipe, STYLES["studio"], count=1, seed=3, steps=RENDER_STEPS)
    width, height = source.image.size
    [big] = image_to_image(
        pipe,
        source.image,
        STYLES["studio"],
        strength=UPSCALE_STRENGTH,
        count=1,
        seed=3,
        size=(2 * width, 2 * height),
        steps=RENDER_STEPS,
    )
    assert big.image.size == (2 * width, 2 * height)
