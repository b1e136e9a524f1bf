"""Exporting a LoRA for AUTOMATIC1111/ComfyUI: kohya's key layout, and the same pictures when loaded back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

from bench.kohya import export_kohya
from pipeline.diffusion.generation import generate_headshots
from pipeline.styles import STYLES
from tests.pipeline.conftest import RENDER_STEPS
from tests.pipeline.test_generation import difference


def test_exported_lora_renders_the_same_headshot(pipe: Any, trained: Any, tmp_path: Path) -> None:
    exported = export_kohya(trained.lora_path, tmp_path / "user.safetensors")
    with safe_open(str(exported), framework="pt") as weights:
        keys = set(weights.keys())  # noqa: SIM118
        alpha = weights.get_tensor(next(key for key in keys if key.endswith(".alpha")))
    assert all(key.startswith("lora_unet_") for key in keys)
    assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert {key.rsplit(".", 1)[0].split(".", 1)[1] for key in keys if "." in key.split(".", 1)[1]} == {
        "lora_down",
        "lora_up",
    }
    assert float(alpha) == 8.0  # rank 8, alpha 8: full strength

    def one(path: Path) -> Any:
        return generate_headshots(pipe, STYLES["studio"], count=1, seed=3, steps=RENDER_STEPS, lora_path=path)[0]

    assert difference(one(exported).image, one(trained.lora_path).image) < 0.5


def test_text_encoder_layers_get_kohyas_names(pipe: Any, text_encoder_trained: Any, tmp_path: Path) -> None:
    exported = export_kohya(text_encoder_trained.lora_path, tmp_path / "te.safetensors")
    with safe_open(str(exported), framework="pt") as weights:
        keys = set(weights.keys())  # noqa: SIM118
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight" in keys
    assert "lora_te2_text_model_encoder_layers_0_self_attn_out_proj.alpha" in keys


def test_a_file_that_is_not_a_lora_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        export_kohya(tmp_path / "missing.safetensors", tmp_path / "out.safetensors")
