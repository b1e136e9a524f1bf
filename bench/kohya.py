"""Exporting a user's LoRA in the kohya-ss layout that AUTOMATIC1111, ComfyUI, Forge and InvokeAI load.

Training saves diffusers' layout (``unet.<module>.lora.down.weight``); those tools expect
``lora_unet_<module_with_underscores>.lora_down.weight`` plus one ``.alpha`` scalar per layer (``lora_te1_``/
``lora_te2_`` for the two text encoders). diffusers converts PEFT keys to that layout; this module reads the file,
maps it to PEFT keys, converts, and writes the alphas from the adapter metadata so the LoRA's strength is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["export_kohya"]

# diffusers' saved layout -> PEFT's, for the UNet (``lora.``) and text encoders (``lora_linear_layer.``).
_TO_PEFT = {
    ".lora.down.": ".lora_A.",
    ".lora.up.": ".lora_B.",
    ".lora_linear_layer.down.": ".lora_A.",
    ".lora_linear_layer.up.": ".lora_B.",
}
_KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2"}


def export_kohya(diffusers_lora_path: Path, target: Path) -> Path:
    """Write the diffusers-format LoRA at ``diffusers_lora_path`` as a kohya-format safetensors file ``target``."""
    import torch
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from safetensors import safe_open
    from safetensors.torch import save_file

    # 1. Check inputs and read the weights and the adapter settings saved beside them.
    source, target = Path(diffusers_lora_path), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"No LoRA weights at '{source}'.")
    if target.suffix != ".safetensors":
        raise ValueError(f"target must be a .safetensors file name, but is '{target.name}'.")
    with safe_open(str(source), framework="pt") as weights:
        state = {key: weights.get_tensor(key) for key in weights.keys()}  # noqa: SIM118 (safe_open is no dict)
        adapter_settings = json.loads((weights.metadata() or {}).get("lora_adapter_metadata", "{}"))
    if not state or not all(".lora." in key or ".lora_linear_layer." in key for key in state):
        raise ValueError(f"'{source.name}' is not a LoRA in diffusers' layout (keys like 'unet.*.lora.down.weight').")

    # 2. Convert the keys: diffusers -> PEFT -> kohya.
    peft_state = {}
    for key, tensor in state.items():
        for old, new in _TO_PEFT.items():
            key = key.replace(old, new)
        peft_state[key] = tensor.contiguous()
    kohya: dict[str, Any] = {}
    for key, tensor in convert_state_dict_to_kohya(peft_state).items():
        # transformers 5 flattened CLIPTextModel (no ``text_model.``); the tools expect the original module names.
        for prefix in ("lora_te1_", "lora_te2_"):
            if key.startswith(prefix) and not key.startswith(prefix + "text_model_"):
                key = prefix + "text_model_" + key.removeprefix(prefix)
        kohya[key] = tensor

    # 3. Alphas: kohya scales each layer by alpha / rank, diffusers by lora_alpha / r; diffusers' converter writes
    #    alpha = rank, right only when they were equal, so write the saved lora_alpha instead.
    for key in [key for key in kohya if key.endswith(".alpha")]:
        component = next(name for prefix, name in _KOHYA_PREFIXES.items() if key.startswith(prefix))
        rank = kohya[key.replace(".alpha", ".lora_down.weight")].shape[0]
        if adapter_settings.get(f"{component}.alpha_pattern"):
            raise ValueError(f"'{source.name}' has per-layer alphas ({component}), which kohya's format cannot carry.")
        alpha = float(adapter_settings.get(f"{component}.lora_alpha", rank))
        kohya[key] = torch.tensor(alpha, dtype=torch.float32)

    # 4. Write, with the few metadata fields the tools show.
    target.parent.mkdir(parents=True, exist_ok=True)
    ranks = {int(tensor.shape[0]) for key, tensor in kohya.items() if key.endswith(".lora_down.weight")}
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(max(ranks))}
    save_file(kohya, str(target), metadata=metadata)
    return target
