"""Building and loading the base model: the tiny model works offline, bad names fail with what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.sdxl_tiny import build_tiny_sdxl
from pipeline.errors import ModelLoadError


def test_tiny_model_is_a_complete_offline_sdxl_checkpoint(model_cache_dir: Path, pipe: Any) -> None:
    folder = model_cache_dir / "tiny-sdxl"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert {"unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"} <= set(index)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert pipe.default_sample_size * pipe.vae_scale_factor == 64
    # Style prompts tokenize into whole words, well inside CLIP's 77 tokens.
    assert len(pipe.tokenizer("a photo of sks person").input_ids) == 7


def test_second_build_reuses_the_finished_folder(model_cache_dir: Path) -> None:
    folder = model_cache_dir / "tiny-sdxl"
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert build_tiny_sdxl(folder) == folder
    assert weights.stat().st_mtime_ns == stamp
    assert not [path for path in model_cache_dir.iterdir() if path.name.startswith(".")]  # no leftover temp dirs


def test_half_built_folder_is_rebuilt(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-sdxl"
    (folder / "unet").mkdir(parents=True)  # as if a build crashed before the marker was written
    build_tiny_sdxl(folder, seed=1)
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((folder / "tiny-sdxl.json").read_text())["seed"] == 1


def test_load_tiny_by_name_uses_the_cache(model_cache_dir: Path) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", dtype="float32", cache_dir=model_cache_dir)
    assert pipe.unet.dtype.__repr__() == "torch.float32" and pipe.device.type == "cpu"


def test_missing_model_names_it_and_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as caught:
        load_base_pipeline("/nonexistent/model", device="cpu", cache_dir=tmp_path)
    message = str(caught.value)
    assert "/nonexistent/model" in message and "HEADSHOT_MODEL" in message and "'tiny'" in message


def test_bad_dtype_names_it_and_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="float8.*float16, bfloat16, float32|float16, bfloat16, float32.*float8"):
        load_base_pipeline("tiny", device="cpu", dtype="float8", cache_dir=tmp_path)
