"""A user's LoRA in the kohya-ss layout that AUTOMATIC1111, ComfyUI, Forge and InvokeAI load, without torch.

Training saves diffusers' layout (``unet.<module>.lora.down.weight``; ``text_encoder.<module>.lora_linear_layer.
down.weight``); those tools expect ``lora_unet_<module_with_underscores>.lora_down.weight`` plus one ``.alpha``
scalar per layer (``lora_te1_``/``lora_te2_`` for the two text encoders). The mapping is diffusers'
``convert_state_dict_to_kohya`` (the tests hold this module to it), done here on numpy arrays so the bot process,
which never imports torch, exports in place: it is a renaming of a few hundred keys, not GPU work worth queueing
behind other users' trainings.
"""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import load, save

__all__ = ["half_precision", "to_kohya"]

_PREFIXES = {"unet": "lora_unet", "text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}
_SUFFIXES = {
    ".lora.down.weight": "lora_down",
    ".lora.up.weight": "lora_up",
    ".lora_linear_layer.down.weight": "lora_down",
    ".lora_linear_layer.up.weight": "lora_up",
}


def to_kohya(diffusers_lora: bytes) -> bytes:
    """The diffusers-format LoRA file ``diffusers_lora`` as a kohya-format safetensors file, in float16.

    Raises ``ValueError`` naming the key when the file is no LoRA in diffusers' layout, or holds per-layer alphas,
    which kohya's format cannot carry.
    """
    # 1. Read the weights and the adapter settings saved beside them.
    state = load(diffusers_lora)
    adapter_settings = json.loads(_metadata(diffusers_lora).get("lora_adapter_metadata", "{}"))
    if not state:
        raise ValueError("the file holds no weights, so it is no LoRA")

    # 2. Rename: <component>.<module><suffix> -> <prefix>_<module with underscores>.<lora_down|lora_up>.weight.
    kohya: dict[str, np.ndarray] = {}
    for key, tensor in state.items():
        component, _, rest = key.partition(".")
        suffix = next((suffix for suffix in _SUFFIXES if rest.endswith(suffix)), None)
        if component not in _PREFIXES or suffix is None:
            raise ValueError(f"'{key}' is no LoRA weight in diffusers' layout (like 'unet.*.lora.down.weight')")
        module = rest.removesuffix(suffix)
        # transformers 5 flattened CLIPTextModel (no ``text_model.``); the tools expect the original module names.
        if component != "unet" and not module.startswith("text_model."):
            module = "text_model." + module
        layer = f"{_PREFIXES[component]}_{module.replace('.', '_')}"
        kohya[f"{layer}.{_SUFFIXES[suffix]}.weight"] = np.ascontiguousarray(_half(tensor))

        # 3. Alphas: kohya scales each layer by alpha / rank, diffusers by lora_alpha / r: write the saved lora_alpha.
        if _SUFFIXES[suffix] == "lora_down":
            if adapter_settings.get(f"{component}.alpha_pattern"):
                raise ValueError(f"the LoRA has per-layer alphas ({component}), which kohya's format cannot carry")
            alpha = float(adapter_settings.get(f"{component}.lora_alpha", tensor.shape[0]))
            kohya[f"{layer}.alpha"] = np.array(alpha, dtype=np.float32)

    # 4. Write, with the few metadata fields the tools show.
    ranks = {int(tensor.shape[0]) for key, tensor in kohya.items() if key.endswith(".lora_down.weight")}
    return save(kohya, metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(max(ranks))})


def half_precision(diffusers_lora: bytes) -> bytes:
    """The same LoRA file with float32 weights stored as float16: half the size to upload, and what LoRAs are
    shared as (diffusers and the kohya tools load either); the adapter metadata stays."""
    state = {key: _half(tensor) for key, tensor in load(diffusers_lora).items()}
    return save(state, metadata=_metadata(diffusers_lora) or None)


def _half(tensor: np.ndarray) -> np.ndarray:
    return tensor.astype(np.float16) if tensor.dtype == np.float32 else tensor


def _metadata(data: bytes) -> dict[str, str]:
    """The file's ``__metadata__`` (the safetensors header: its length, then JSON), which ``load`` leaves out."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    metadata = header.get("__metadata__") or {}
    return {str(key): str(value) for key, value in metadata.items()}
