"""Attaching a user's LoRA to the shared base pipeline for one call, and taking it off again completely.

The worker keeps one pipeline for all users, so an adapter left behind would leak one person's face into the
next person's headshots. Removal therefore deletes the adapter and, when no other adapter remains, swaps the peft
wrapper layers back for the original modules, then checks that nothing of it is left.
"""

from __future__ import annotations

import uuid
from typing import Any

__all__ = ["LORA_COMPONENTS", "new_adapter_name", "remove_adapter", "loaded_adapters"]

LORA_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


def new_adapter_name(purpose: str) -> str:
    """A name no other call uses, so concurrent mistakes fail loudly instead of sharing weights."""
    return f"headshot-{purpose}-{uuid.uuid4().hex[:12]}"


def loaded_adapters(pipe: Any) -> set[str]:
    """Names of the adapters attached to any of the pipeline's LoRA-capable models."""
    names: set[str] = set()
    for component in LORA_COMPONENTS:
        model = getattr(pipe, component, None)
        names.update(getattr(model, "peft_config", None) or {})
    return names


def remove_adapter(pipe: Any, name: str) -> None:
    """Delete adapter ``name`` everywhere; restore the plain modules if it was the last one."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    # 1. Delete this adapter's weights and config (a no-op for models that never had it).
    for component in LORA_COMPONENTS:
        model = getattr(pipe, component, None)
        if model is None or name not in (getattr(model, "peft_config", None) or {}):
            continue
        if hasattr(model, "delete_adapters"):  # diffusers models
            model.delete_adapters(name)
        else:  # transformers models
            model.delete_adapter(name)

    # 2. With no adapter left, put the original layers back so the base model is structurally as loaded.
    if not loaded_adapters(pipe):
        unet = pipe.unet
        if any(isinstance(module, BaseTunerLayer) for module in unet.modules()):
            unet.unload_lora()
        for component in LORA_COMPONENTS[1:]:
            model = getattr(pipe, component, None)
            if model is not None and any(isinstance(module, BaseTunerLayer) for module in model.modules()):
                from diffusers.loaders.lora_base import _remove_text_encoder_monkey_patch

                _remove_text_encoder_monkey_patch(model)

    # 3. Verify, because a leftover adapter is a privacy bug, not a cosmetic one.
    leftovers = [
        f"{component}.{module_name}"
        for component in LORA_COMPONENTS
        if (model := getattr(pipe, component, None)) is not None
        for module_name, module in model.named_modules()
        if isinstance(module, BaseTunerLayer) and name in getattr(module, "lora_A", {})
    ]
    if name in loaded_adapters(pipe) or leftovers:
        raise RuntimeError(f"LoRA adapter '{name}' is still attached after removal ({leftovers[:3]}).")
