"""Rendering from an image on the loaded pipeline: variations stay near their source, an upscale doubles it, and a
warm worker compiles nothing new for either and keeps every weight in its dtype."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.diffusion.acceleration import optimize_for_inference
from pipeline.diffusion.face_pass import face_pass
from pipeline.diffusion.generation import generate_headshots
from pipeline.diffusion.img2img import UPSCALE_STRENGTH, VARIATION_STRENGTH, image_to_image, img2img_pipeline
from pipeline.diffusion.loading import load_base_pipeline, weight_dtypes
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.diffusion.serving import compile_for_serving
from pipeline.selfies.faces import FaceAnalyzer
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


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_variation_reuses_the_headshots_graphs_on_a_channels_last_worker(model_cache_dir: Path) -> None:
    import torch
    import torch._dynamo.utils

    pipe = load_base_pipeline("tiny", device="cpu", dtype="bfloat16", cache_dir=model_cache_dir)
    # A GPU worker's layout (``use_channels_last`` does it on CUDA only): its VAE encodes a start image into
    # channels-last latents, and the compiled UNet and VAE decoder guard on their input's strides.
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    # The whole UNet and the VAE decoder, as a GPU worker's default scope compiles them; "eager": dynamo's guards.
    optimize_for_inference(pipe, compile_backend="eager", compile_scope="unet")
    style = STYLES["casual"]
    [source, _] = generate_headshots(pipe, style, count=2, seed=3, steps=2)
    compiled = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    image_to_image(pipe, source.image, style, strength=VARIATION_STRENGTH, count=2, seed=5, steps=2)
    assert int(torch._dynamo.utils.counters["stats"]["unique_graphs"]) == compiled, "the variation recompiled"


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.timeout(900)  # a worker's warm-up traced by dynamo on a CPU: minutes on a slow box (test_model_setup)
def test_a_warm_worker_serves_every_action_without_compiling_again(
    model_cache_dir: Path, second_lora: Any, astronaut: Image.Image, faces: FaceAnalyzer
) -> None:
    import torch._dynamo.utils

    def graphs() -> int:
        return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])

    # bf16, as a GPU worker loads SDXL: diffusers' ``from_pipe`` once cast the shared components of the actions' twin
    # to float32, so after the warm-up's first action every render ran ~3x slower and recompiled (a float32 tiny
    # model cannot show it).
    pipe = load_base_pipeline("tiny", device="cpu", dtype="bfloat16", cache_dir=model_cache_dir)
    slot = LoraSlot(pipe, max_rank=16)
    loaded = weight_dtypes(pipe)
    assert loaded["unet"] == {torch.bfloat16}
    style, lora = STYLES["casual"], second_lora.lora_path
    # "eager": dynamo's tracing and guards (what decides a recompile) without inductor's codegen on a CPU.
    compile_for_serving(pipe, slot, styles=[style], batch_sizes={2}, compile_backend="eager", compile_scope="blocks")
    warmed = graphs()

    source = generate_headshots(pipe, style, count=2, seed=3, steps=2, lora_path=lora, lora_slot=slot)[0]
    width, height = source.image.size
    for strength, count, size in ((VARIATION_STRENGTH, 2, None), (UPSCALE_STRENGTH, 1, (2 * width, 2 * height))):
        image_to_image(
            pipe,
            source.image,
            style,
            strength=strength,
            count=count,
            seed=5,
            size=size,
            steps=2,
            lora_path=lora,
            lora_slot=slot,
        )
    [faced] = face_pass(
        pipe, [astronaut.resize((200, 250))], faces, style, seeds=[1], lora_path=lora, lora_slot=slot, steps=2
    )
    assert faced.size == (200, 250)
    assert graphs() == warmed, "an action compiled a new graph on a warm worker"
    assert weight_dtypes(pipe) == loaded
