"""HEADSHOT_TRAIN_FLOAT8: a worker whose rendering is FP8 trains through the same layers in FP8, its gradient scales
calibrated at start before the warm-up compiles, so a user's training compiles nothing; refused where it cannot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from jobs.settings import CompileProfile, Settings
from jobs.worker.model_setup import ServingModel, prepare_training
from jobs.worker.training_setup import training_plan
from pipeline.diffusion.float8 import use_float8_linears
from pipeline.diffusion.float8_scales import calibrate_float8, static_layers
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.loop import train_lora
from tests.jobs.test_model_setup import graphs


def fp8_settings(tmp_path: Path, model_cache: Path, **values: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        model="tiny",
        data_dir=tmp_path / "data",
        model_cache_dir=model_cache,
        lora_rank=4,
        compile_backend="eager",  # dynamo's tracing and guards (what decides a recompile), no codegen on a CPU
        train_float8=True,
        **values,
    )


def test_fp8_training_without_compiled_training_is_refused_by_name(tmp_path: Path, model_cache: Path) -> None:
    with pytest.raises(ValueError, match="HEADSHOT_TRAIN_FLOAT8=true needs HEADSHOT_COMPILE_TRAINING=true"):
        fp8_settings(tmp_path, model_cache, compile_training=False)


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_worker_without_fp8_rendering_refuses_to_train_in_fp8(tmp_path: Path, model_cache: Path) -> None:
    settings = fp8_settings(tmp_path, model_cache)
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    model = ServingModel(pipe, training_plan(pipe, settings), None)
    model.lora_slot = LoraSlot(pipe, max_rank=4)
    with pytest.raises(ValueError, match="set HEADSHOT_RENDER_FLOAT8=true"):
        prepare_training(model, settings, CompileProfile(unet=False, training=True, scope="blocks"))


@pytest.mark.usefixtures("fresh_dynamo")
def test_an_fp8_worker_calibrates_its_gradients_at_start_and_a_users_training_compiles_nothing(
    tmp_path: Path, model_cache: Path, selfie_dir: Path
) -> None:
    settings = fp8_settings(tmp_path, model_cache)
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    model = ServingModel(pipe, training_plan(pipe, settings), None)
    model.lora_slot = LoraSlot(pipe, max_rank=4)
    # As prepare_model leaves an FP8 worker: static layers, their input scales calibrated on renders.
    layers = use_float8_linears(pipe.unet, scaling="static")
    with torch.no_grad():
        calibrate_float8(pipe.unet, lambda: pipe(prompt="a portrait", num_inference_steps=2, guidance_scale=2.0))

    prepare_training(model, settings, CompileProfile(unet=False, training=True, scope="blocks"))
    fp8 = static_layers(pipe.unet).values()
    assert sum(layer.trains_in_float8 for layer in fp8) == layers
    # Calibrated on the eager step, before the warm-up traced anything (graphs guard on it); the layers ahead of the
    # first LoRA get no backward and keep scaling by their own largest value.
    assert 0 < sum(layer.gradients_calibrated for layer in fp8) < layers
    assert not any(layer.calibrating_gradients for layer in fp8)

    started = graphs()
    selfies = [Image.open(path).convert("RGB") for path in sorted(selfie_dir.iterdir())]
    plan = model.train_plan
    recipe = TrainingConfig(rank=4, steps=4, batch_size=plan.batch_size, seed=3)
    result = train_lora(pipe, selfies, recipe, tmp_path / "lora", slot=model.training_slot)
    assert result.lora_path.exists()
    assert graphs() == started, "a user's FP8 training compiled a new graph"
