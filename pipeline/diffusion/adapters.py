"""Attaching a user's LoRA to the shared base pipeline for one call, and taking it off again completely.

The worker keeps one pipeline for all users, so an adapter left behind would leak one person's face into the
next person's headshots. Removal therefore deletes the adapter and, on each model where no other adapter remains,
swaps the peft wrapper layers back for the original modules, then checks that nothing of it is left. A long-lived
adapter (a ``LoraSlot``) may stay loaded; calls that add their own adapter make it the only active one and hand
activity back afterwards.
"""

from __future__ import annotations

import uuid
from typing import Any

__all__ = [
    "LORA_COMPONENTS",
    "TEXT_ENCODER_COMPONENTS",
    "UNET_ATTENTION_TARGETS",
    "activate_only",
    "loaded_adapters",
    "new_adapter_name",
    "remove_adapter",
    "restore_active_adapters",
    "skip_lora_input_casts",
    "snapshot_active_adapters",
]

# The denoisers first (SDXL's UNet, FLUX.2's transformer), then the text encoders that SDXL LoRAs may patch too.
LORA_COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2")
TEXT_ENCODER_COMPONENTS = ("text_encoder", "text_encoder_2")
# The UNet layers a face LoRA trains and the slots hold: every attention block's query, key, value and output.
UNET_ATTENTION_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")


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


def snapshot_active_adapters(pipe: Any) -> dict[str, list[str]]:
    """Per model that has adapters, the names active now; give it to ``restore_active_adapters`` later."""
    active: dict[str, list[str]] = {}
    for component in LORA_COMPONENTS:
        model = getattr(pipe, component, None)
        if model is not None and getattr(model, "peft_config", None):
            active[component] = list(model.active_adapters())
    return active


def activate_only(pipe: Any, name: str) -> None:
    """Make ``name`` the only active adapter on every model that has it (others stay loaded, inactive)."""
    for component in LORA_COMPONENTS:
        model = getattr(pipe, component, None)
        if model is not None and name in (getattr(model, "peft_config", None) or {}):
            model.set_adapter(name)


def restore_active_adapters(pipe: Any, active: dict[str, list[str]]) -> None:
    """Re-activate what ``snapshot_active_adapters`` saw, for the adapters still loaded."""
    for component, names in active.items():
        model = getattr(pipe, component, None)
        present = [name for name in names if name in (getattr(model, "peft_config", None) or {})]
        if model is not None and present:
            model.set_adapter(present if len(present) > 1 else present[0])
            # peft marks active adapters trainable; a shared inference pipeline keeps everything frozen.
            model.requires_grad_(False)


def skip_lora_input_casts(model: Any, adapter: str) -> int:
    """Stop peft casting the input of ``adapter``'s layers on ``model`` to the LoRA weights' dtype; return how many.

    Only for LoRAs that run under autocast. peft casts a layer's input to its LoRA weights' dtype, so a float32 LoRA
    on a bfloat16 model copies every projection's activations to float32, and autocast then casts them back to
    bfloat16 for the product: two passes over the activations (and two more in the backward) for the same numbers.
    Without autocast the cast is what makes the dtypes match, so keep it there.
    """
    count = 0
    for module in model.modules():
        if adapter in getattr(module, "lora_A", {}):
            module.cast_input_dtype_enabled = False
            count += 1
    return count


def remove_adapter(pipe: Any, name: str) -> None:
    """Delete adapter ``name`` everywhere; restore the plain modules of each model left without adapters."""
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

    # 2. On each model with no adapter left, put the original layers back so it is structurally as loaded.
    for component in LORA_COMPONENTS:
        model = getattr(pipe, component, None)
        if model is None or getattr(model, "peft_config", None):
            continue
        if not any(isinstance(module, BaseTunerLayer) for module in model.modules()):
            continue
        if component in ("unet", "transformer"):
            model.unload_lora()
        else:
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
