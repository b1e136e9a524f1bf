"""Rendering headshots: seeds make images repeatable, a LoRA changes them, and the base model stays clean."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.diffusion.generation import GeneratedImage, generate_headshots, headshot_size, pil_images
from pipeline.styles import SCHEDULERS, STYLES
from tests.pipeline.conftest import RENDER_STEPS


def difference(first: Image.Image, second: Image.Image) -> float:
    """Mean absolute pixel difference, 0-255."""
    return float(np.abs(np.asarray(first, dtype=np.float32) - np.asarray(second, dtype=np.float32)).mean())


def test_images_are_portrait_with_their_seed_recorded(pipe: Any) -> None:
    progress: list[tuple[int, int]] = []
    images = generate_headshots(
        pipe,
        STYLES["studio"],
        count=3,
        seed=40,
        batch_size=2,
        steps=RENDER_STEPS,
        on_progress=lambda *a: progress.append(a),
    )
    assert [generated.seed for generated in images] == [40, 41, 42]
    assert progress == [(2, 3), (3, 3)]
    width, height = images[0].image.size
    assert (width, height) == headshot_size(pipe, (4, 5)) == (56, 72)
    assert all(generated.image.mode == "RGB" for generated in images)
    # Different seeds are different pictures.
    assert difference(images[0].image, images[1].image) > 1.0


def test_same_seed_gives_the_same_image_even_outside_its_batch(pipe: Any) -> None:
    batch = generate_headshots(pipe, STYLES["casual"], count=3, seed=7, steps=RENDER_STEPS)
    again = generate_headshots(pipe, STYLES["casual"], count=3, seed=7, steps=RENDER_STEPS)
    assert all(difference(a.image, b.image) == 0.0 for a, b in zip(batch, again, strict=True))
    # "More like this": image 2 alone, from its recorded seed, matches (batched maths may differ by a rounding step).
    alone = generate_headshots(pipe, STYLES["casual"], count=1, seed=batch[2].seed, steps=RENDER_STEPS)
    assert difference(alone[0].image, batch[2].image) < 0.5


def test_the_users_lora_changes_the_headshots(pipe: Any, trained: Any, base_headshots: list[GeneratedImage]) -> None:
    with_lora = generate_headshots(
        pipe, STYLES["linkedin"], count=2, seed=100, lora_path=trained.lora_path, steps=RENDER_STEPS
    )
    assert [generated.seed for generated in with_lora] == [100, 101]
    assert difference(with_lora[0].image, base_headshots[0].image) > 2.0


def test_base_model_is_identical_after_training_and_lora_renders(
    pipe: Any, trained: Any, base_headshots: list[GeneratedImage]
) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    generate_headshots(pipe, STYLES["linkedin"], count=1, seed=5, lora_path=trained.lora_path, steps=RENDER_STEPS)
    after = generate_headshots(pipe, STYLES["linkedin"], count=2, seed=100, steps=RENDER_STEPS)
    assert [difference(a.image, b.image) for a, b in zip(after, base_headshots, strict=True)] == [0.0, 0.0]
    assert not any(isinstance(module, BaseTunerLayer) for module in pipe.unet.modules())


def test_missing_lora_file_is_named(pipe: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        generate_headshots(pipe, STYLES["linkedin"], count=1, seed=0, lora_path=missing, steps=1)


def test_bad_counts_are_refused_with_the_value(pipe: Any) -> None:
    with pytest.raises(ValueError, match="count must be at least 1, but is 0"):
        generate_headshots(pipe, STYLES["linkedin"], count=0, seed=0)
    with pytest.raises(ValueError, match="aspect 1:1000"):
        headshot_size(pipe, (1, 1000))


@pytest.mark.parametrize("name", list(STYLES))
def test_every_preset_renders(pipe: Any, name: str) -> None:
    (generated,) = generate_headshots(pipe, STYLES[name], count=1, seed=1, steps=1)
    assert generated.image.size == headshot_size(pipe, STYLES[name].aspect)
    assert np.asarray(generated.image).std() > 1.0  # a picture, not a blank


def test_the_styles_sampler_is_used_for_the_call_only(pipe: Any) -> None:
    original = pipe.scheduler
    renders = {
        scheduler: generate_headshots(
            pipe, replace(STYLES["studio"], scheduler=scheduler), count=1, seed=9, steps=RENDER_STEPS
        )[0].image
        for scheduler in SCHEDULERS
    }
    assert pipe.scheduler is original
    assert difference(renders["euler"], renders["dpmpp_2m_karras"]) > 0.5
    assert difference(renders["euler_a"], renders["ddim"]) > 0.5


def test_cancel_stops_rendering_within_a_step_and_leaves_the_base_clean(
    pipe: Any, trained: Any, base_headshots: list[GeneratedImage]
) -> None:
    from pipeline.diffusion.generation import GenerationCancelled

    asked: list[int] = []

    def stop_after_two_steps() -> bool:
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(GenerationCancelled, match="0 of 8 images"):
        generate_headshots(
            pipe,
            STYLES["linkedin"],
            count=8,
            seed=3,
            batch_size=2,
            lora_path=trained.lora_path,
            steps=20,
            should_stop=stop_after_two_steps,
        )
    assert len(asked) <= 4  # asked after each denoising step, and it ended right away rather than after 20 steps
    again = generate_headshots(pipe, STYLES["linkedin"], count=2, seed=100, steps=RENDER_STEPS)
    assert [np.asarray(g.image).tolist() for g in again] == [np.asarray(g.image).tolist() for g in base_headshots]


def test_pixels_made_on_the_device_are_diffusers_own_conversion() -> None:
    from diffusers.image_processor import VaeImageProcessor

    images = torch.rand(3, 3, 40, 24, generator=torch.Generator().manual_seed(0))
    images[0, 0, 0, :4] = torch.tensor([0.5 / 255, 1.5 / 255, 254.5 / 255, 1.0])  # halves round to even, as numpy's
    ours = pil_images(images.to(torch.bfloat16))
    theirs = VaeImageProcessor.numpy_to_pil(VaeImageProcessor.pt_to_numpy(images.to(torch.bfloat16)))
    for one, other in zip(ours, theirs, strict=True):
        assert (one.mode, one.size) == ("RGB", (24, 40))
        assert np.array_equal(np.asarray(one), np.asarray(other))
