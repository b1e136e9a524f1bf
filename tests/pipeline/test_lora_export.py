"""Exporting a LoRA for AUTOMATIC1111/ComfyUI without torch: kohya's key layout, diffusers' own mapping, and the same
pictures when loaded back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load, save

from pipeline.diffusion.generation import generate_headshots
from pipeline.lora_export import to_kohya
from pipeline.styles import STYLES
from tests.pipeline.conftest import RENDER_STEPS
from tests.pipeline.test_generation import difference


def _write(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path


def test_exported_lora_renders_the_same_headshot(pipe: Any, trained: Any, tmp_path: Path) -> None:
    exported = _write(to_kohya(trained.lora_path.read_bytes()), tmp_path / "user.safetensors")
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


def test_keys_are_diffusers_own_kohya_mapping(text_encoder_trained: Any) -> None:
    """The torch-free renaming gives what diffusers' ``convert_state_dict_to_kohya`` gives, text encoders included."""
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from safetensors.torch import load_file

    # diffusers' saved layout -> PEFT's, which its kohya converter reads.
    to_peft = {".lora.down.": ".lora_A.", ".lora.up.": ".lora_B.", ".lora_linear_layer.down.": ".lora_A."}
    to_peft[".lora_linear_layer.up."] = ".lora_B."
    peft_state = {}
    for key, tensor in load_file(str(text_encoder_trained.lora_path)).items():
        for old, new in to_peft.items():
            key = key.replace(old, new)
        peft_state[key] = tensor
    expected = set(convert_state_dict_to_kohya(peft_state))
    # transformers 5 flattened CLIPTextModel; the tools expect the original "text_model" module names.
    expected = {
        key.replace("lora_te1_", "lora_te1_text_model_").replace("lora_te2_", "lora_te2_text_model_")
        if key.startswith(("lora_te1_", "lora_te2_")) and "_text_model_" not in key
        else key
        for key in expected
    }
    keys = set(load(to_kohya(text_encoder_trained.lora_path.read_bytes())))
    assert keys == expected
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight" in keys
    assert "lora_te2_text_model_encoder_layers_0_self_attn_out_proj.alpha" in keys


def test_a_file_that_is_not_a_lora_is_named() -> None:
    with pytest.raises(ValueError, match="'vae.encoder.weight' is no LoRA weight"):
        to_kohya(save({"vae.encoder.weight": np.zeros((2, 2), dtype=np.float32)}))
