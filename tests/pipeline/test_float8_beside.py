"""FP8 calibration on a thread beside a training compile: the scales a calibration before it would give, to the bit,
through a copy of the UNet's modules that holds no tensor of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from pipeline.diffusion.float8 import use_float8_linears
from pipeline.diffusion.float8_beside import Float8Calibration, calibration_clone
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.diffusion.serving import calibrated_float8
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.loop import train_lora
from pipeline.diffusion.training.slot import TrainingSlot
from tests.pipeline.test_float8_scales import LOOKS, input_scales
from tests.pipeline.test_generation import difference
from tests.pipeline.test_lora_slot import render


def rendering_pipeline(model_cache_dir: Path) -> tuple[Any, LoraSlot]:
    """A tiny pipeline as a worker sets one up before training: the rendering slot, then static FP8 layers."""
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    slot = LoraSlot(pipe, max_rank=16)
    use_float8_linears(pipe.unet, scaling="static")
    return pipe, slot


def storages(module: Any) -> set[int]:
    return {tensor.untyped_storage().data_ptr() for tensor in [*module.parameters(), *module.buffers()]}


def test_the_clone_shares_every_tensor_and_none_of_the_modules(model_cache_dir: Path) -> None:
    pipe, _ = rendering_pipeline(model_cache_dir)
    clone = calibration_clone(pipe)
    assert clone.unet is not pipe.unet and storages(clone.unet) == storages(pipe.unet)
    assert clone.text_encoder is pipe.text_encoder and clone.scheduler is not pipe.scheduler
    pipe.unet.train()
    assert not clone.unet.training  # a module's own state stays the clone's
    assert "unet" in pipe.config and pipe.components["unet"] is pipe.unet  # the pipeline's registry is untouched


@pytest.mark.usefixtures("fresh_dynamo")
def test_scales_calibrated_beside_a_training_compile_are_a_calibration_before_it(
    model_cache_dir: Path, tmp_path: Path
) -> None:
    before, before_slot = rendering_pipeline(model_cache_dir)
    calibrated_float8(before, LOOKS, tmp_path / "before.json")

    pipe, slot = rendering_pipeline(model_cache_dir)
    calibration = Float8Calibration(pipe, LOOKS, tmp_path / "beside.json").start()
    # On this thread meanwhile, what a worker's start does next: a training slot compiled by blocks ("eager": dynamo's
    # tracing and guards), trained on a job (train mode, its own adapter active, its weights moving).
    training = TrainingSlot(pipe, rank=4, compile_backend="eager", compile_scope="blocks")
    picture = Image.new("RGB", (64, 64), "gray")
    train_lora(pipe, [picture], TrainingConfig(rank=4, steps=4, batch_size=2), tmp_path, slot=training, save=False)
    calibration.wait()

    assert input_scales(pipe) == input_scales(before) and not calibration.reused
    assert (tmp_path / "beside.json").read_text() == (tmp_path / "before.json").read_text()  # kept for a restart
    assert difference(render(pipe, slot=slot).image, render(before, slot=before_slot).image) == 0


def test_a_calibration_that_fails_beside_raises_on_the_starts_thread(model_cache_dir: Path, tmp_path: Path) -> None:
    pipe, _ = rendering_pipeline(model_cache_dir)
    calibration = Float8Calibration(pipe, [], tmp_path / "scales.json").start()  # renders nothing: every layer missed
    with pytest.raises(ValueError, match="never reached"):
        calibration.wait()
    with torch.no_grad(), pytest.raises(RuntimeError, match="has not been calibrated"):
        render(pipe)
