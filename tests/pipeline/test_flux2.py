"""FLUX.2 [klein] behind the same contract as SDXL: read from the checkpoint, trained, rendered and swapped offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.diffusion.adapters import loaded_adapters
from pipeline.diffusion.families import Family, checkpoint_family, pipeline_family
from pipeline.diffusion.generation import GeneratedImage, generate_headshots
from pipeline.diffusion.loading import TINY_FLUX2_MODEL, load_base_pipeline
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.loop import LORA_WEIGHT_NAME, TrainingCancelled, TrainingResult, train_lora
from pipeline.errors import ModelLoadError
from pipeline.looks import ASPECTS
from pipeline.styles import STYLES
from tests.pipeline.test_looks import renders_at_its_shape

STEPS = 2


def pixels(images: list[GeneratedImage]) -> np.ndarray:
    return np.stack([np.asarray(generated.image, dtype=np.float32) for generated in images])


def render(pipe: Any, **kwargs: Any) -> np.ndarray:
    return pixels(generate_headshots(pipe, STYLES["linkedin"], count=2, seed=21, steps=STEPS, **kwargs))


def write_index(folder: Path, class_name: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}), encoding="utf-8")
    return folder


def test_the_family_is_read_from_the_checkpoint(flux2_pipe: Any, model_cache: Path, tmp_path: Path) -> None:
    # The tiny klein was loaded from its folder, as HEADSHOT_MODEL=<klein folder or hub id> would be.
    assert pipeline_family(flux2_pipe) is Family.FLUX2
    assert type(flux2_pipe).__name__ == "Flux2KleinPipeline"
    assert checkpoint_family(str(model_cache / "tiny-flux2"), cache_dir=model_cache, local=True)[0] is Family.FLUX2
    sdxl = write_index(tmp_path / "sdxl", "StableDiffusionXLPipeline")
    assert checkpoint_family(str(sdxl), cache_dir=model_cache, local=True) == (Family.SDXL, "StableDiffusionXLPipeline")
    # A family the bot cannot train is refused by name, before any weights load.
    other = write_index(tmp_path / "sd3", "StableDiffusion3Pipeline")
    with pytest.raises(ModelLoadError, match="StableDiffusion3Pipeline"):
        load_base_pipeline(str(other), device="cpu", cache_dir=model_cache)


def fixed_noise_loss(pipe: Any, images: list[Image.Image], lora_path: Path | None = None) -> float:
    """The flow-matching loss on ``images`` for the same draws of noise and noise levels, with or without a LoRA."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from pipeline.diffusion.adapters import remove_adapter
    from pipeline.diffusion.flux2_rendering import prompt_length
    from pipeline.diffusion.training.dataset import encode_training_set
    from pipeline.diffusion.training.flux2_loss import flow_matching_batch_loss

    training_set = encode_training_set(pipe, images)
    prompt = pipe.encode_prompt("a photo of sks person", device="cpu", max_sequence_length=prompt_length(pipe))
    schedule = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    if lora_path is not None:
        pipe.load_lora_weights(str(lora_path.parent), weight_name=lora_path.name, adapter_name="loss-check")
    try:
        generator = torch.Generator("cpu").manual_seed(0)
        config = TrainingConfig(batch_size=16)
        with torch.no_grad():
            draws = [
                flow_matching_batch_loss(
                    pipe.transformer.forward,
                    schedule,
                    pipe,
                    training_set,
                    prompt,
                    config,
                    generator,
                    "cpu",
                    torch.float32,
                )
                for _ in range(4)
            ]
        return float(torch.stack(draws).mean())
    finally:
        if lora_path is not None:
            remove_adapter(pipe, "loss-check")


def test_training_lowers_the_loss_and_the_lora_changes_the_headshots(
    flux2_pipe: Any, flux2_trained: TrainingResult, selfie_images: list[Image.Image]
) -> None:
    before = fixed_noise_loss(flux2_pipe, selfie_images)
    after = fixed_noise_loss(flux2_pipe, selfie_images, flux2_trained.lora_path)
    assert after < before * 0.95, f"loss on the selfies went from {before:.4f} to {after:.4f}"
    losses = flux2_trained.losses
    assert len(losses) == 24
    assert np.mean(losses[-6:]) < np.mean(losses[:6]), losses
    base = render(flux2_pipe)
    with_lora = render(flux2_pipe, lora_path=flux2_trained.lora_path)
    assert np.abs(with_lora - base).mean() > 1.0
    # The LoRA came and went: the shared pipeline renders the base again, bit for bit.
    assert not loaded_adapters(flux2_pipe)
    np.testing.assert_array_equal(render(flux2_pipe), base)


def test_the_lora_file_loads_with_plain_diffusers(flux2_pipe: Any, flux2_trained: TrainingResult) -> None:
    from diffusers import Flux2KleinPipeline

    plain = Flux2KleinPipeline.from_pretrained(flux2_pipe.config._name_or_path, local_files_only=True)
    plain.set_progress_bar_config(disable=True)
    plain.load_lora_weights(str(flux2_trained.lora_path.parent), weight_name=LORA_WEIGHT_NAME)
    # Our render of image 0 is diffusers' own call with the same seed, prompt and settings.
    ours = generate_headshots(
        flux2_pipe, STYLES["studio"], count=1, seed=4, steps=STEPS, lora_path=flux2_trained.lora_path
    )
    import torch

    theirs = plain(
        prompt=STYLES["studio"].render_sentence(),
        num_inference_steps=STEPS,
        guidance_scale=1.0,
        width=ours[0].image.width,
        height=ours[0].image.height,
        max_sequence_length=plain.tokenizer.model_max_length,
        generator=torch.Generator("cpu").manual_seed(4),
    ).images[0]
    np.testing.assert_array_equal(np.asarray(theirs), np.asarray(ours[0].image))


def test_a_b_a_through_the_slot_equals_fresh_loads(
    model_cache: Path, flux2_trained: TrainingResult, selfie_images: list[Image.Image], tmp_path: Path
) -> None:
    # A warm worker's pipeline of its own: its slot stays attached for its whole life.
    pipe = load_base_pipeline(TINY_FLUX2_MODEL, device="cpu", cache_dir=model_cache)
    second = train_lora(pipe, selfie_images[4:], TrainingConfig(rank=4, steps=8, learning_rate=1e-2, seed=9), tmp_path)
    lora_a, lora_b = flux2_trained.lora_path, second.lora_path
    fresh = {path: render(pipe, lora_path=path) for path in (lora_a, lora_b)}
    base = render(pipe)
    assert np.abs(fresh[lora_a] - fresh[lora_b]).mean() > 1.0

    slot = LoraSlot(pipe, max_rank=8)
    for path in (lora_a, lora_b, lora_a):
        np.testing.assert_allclose(render(pipe, lora_path=path, lora_slot=slot), fresh[path], atol=1)
    assert slot.active is None  # cleared after each request: no user's weights stay behind
    np.testing.assert_allclose(render(pipe, lora_slot=slot), base, atol=1)


def test_cancel_stops_training_without_writing_a_lora(
    flux2_pipe: Any, selfie_images: list[Image.Image], tmp_path: Path
) -> None:
    asked = 0

    def stop_after_three() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3

    config = TrainingConfig(rank=4, steps=400, seed=1)
    with pytest.raises(TrainingCancelled, match="stopped at step 12 of 400"):
        train_lora(flux2_pipe, selfie_images[:2], config, tmp_path, should_stop=stop_after_three)
    assert not (tmp_path / LORA_WEIGHT_NAME).exists()
    assert not loaded_adapters(flux2_pipe)


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_each_aspect_renders_at_its_shape(flux2_pipe: Any, aspect: str) -> None:
    renders_at_its_shape(flux2_pipe, aspect)
