"""Inference speed-ups: safe on a CPU, and never at the cost of silently dropping a user's LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.acceleration import is_qkv_fused, optimize_for_inference
from pipeline.generation import GeneratedImage, generate_headshots
from pipeline.loading import load_base_pipeline
from pipeline.lora_slot import LoraSlot
from pipeline.styles import STYLES
from tests.pipeline.conftest import RENDER_STEPS
from tests.pipeline.test_generation import difference


def test_fused_projections_render_the_base_but_refuse_a_lora(
    model_cache_dir: Path, trained: Any, base_headshots: list[GeneratedImage]
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    optimize_for_inference(pipe, compile=False, fuse_qkv=True)  # CPU: the GPU-only switches are skipped
    assert is_qkv_fused(pipe)
    fused = generate_headshots(pipe, STYLES["linkedin"], count=1, seed=100, steps=RENDER_STEPS)
    assert difference(fused[0].image, base_headshots[0].image) < 0.5  # same maths, one matrix product
    with pytest.raises(ValueError, match="fused"):
        generate_headshots(pipe, STYLES["linkedin"], count=1, seed=1, steps=1, lora_path=trained.lora_path)


def test_fusing_is_refused_while_a_lora_slot_is_loaded(model_cache_dir: Path) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    LoraSlot(pipe, max_rank=4)
    with pytest.raises(ValueError, match="headshot-slot"):
        optimize_for_inference(pipe, compile=False, fuse_qkv=True)
    optimize_for_inference(pipe, compile=False)  # the default keeps LoRAs working
    assert not is_qkv_fused(pipe)
