"""The parts of a LoRA merge that know nothing of the slot: a file's factors and scales as peft would read them,
the factors moved to the device in one copy per dtype, and same-shaped layers' factors stacked for one batched
product (``lora_slot.LoraSlot`` merges with them).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["lora_factors", "stacked_factors", "to_device"]


def lora_factors(
    state: dict[str, Any],
    alphas: dict[str, float] | None,
    metadata: dict[str, Any] | None,
    file_name: str,
    *,
    prefix: str,
) -> dict[str, tuple[Any, Any, float]]:
    """Layer name (below ``prefix``, the denoiser's: "unet" or "transformer") -> (B, A, scaling) from a LoRA file's
    state dict, network alphas and metadata as diffusers' loader returns them, the tensors as the file holds them.

    diffusers' key conversion and LoRA config decide the names and scales, so every format diffusers loads gives the
    scales peft would. Raises ``ValueError`` naming ``file_name`` for what a merge cannot hold (LoKr, DoRA, LoRA
    biases)."""
    from diffusers.utils.peft_utils import _create_lora_config  # the config diffusers' own loader builds
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
    from peft.utils.other import get_pattern_key

    prefix = prefix + "."
    state = {key.removeprefix(prefix): value for key, value in state.items()}
    if not state:
        return {}
    if any(".lokr_" in key for key in state):
        raise ValueError(f"The LoRA '{file_name}' is a LoKr adapter; the slot merges LoRA factors only.")
    if "lora_A" not in next(iter(state)):
        state = convert_unet_state_dict_to_peft(state)  # diffusers' and kohya's layouts to peft's
    metadata = {key.removeprefix(prefix): v for key, v in (metadata or {}).items() if key.startswith(prefix)}
    alphas = {key.removeprefix(prefix): v for key, v in (alphas or {}).items() if key.startswith(prefix)}
    ranks = {f"^{key}": value.shape[1] for key, value in state.items() if "lora_B" in key and value.ndim > 1}
    config = _create_lora_config(state, alphas or None, metadata or None, ranks)
    unsupported = [name for name, used in (("DoRA", config.use_dora), ("LoRA biases", config.lora_bias)) if used]
    if unsupported:
        raise ValueError(f"The LoRA '{file_name}' uses {unsupported[0]}, which the slot cannot merge.")
    factors: dict[str, tuple[Any, Any, float]] = {}
    for key in state:
        if not key.endswith(".lora_A.weight"):
            continue
        name = key.removesuffix(".lora_A.weight")
        # Per-layer ranks and alphas as peft reads them (files with one rank and one alpha have no patterns).
        rank, alpha = config.r, config.lora_alpha
        if config.rank_pattern:
            rank = config.rank_pattern.get(get_pattern_key(config.rank_pattern.keys(), name), rank)
        if config.alpha_pattern:
            alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern.keys(), name), alpha)
        scaling = alpha / math.sqrt(rank) if config.use_rslora else alpha / rank
        factors[name] = (state[f"{name}.lora_B.weight"], state[key], scaling)
    return factors


def stacked_factors(names: list[str], factors: dict[str, tuple[Any, Any, Any]]) -> tuple[Any, Any, Any]:
    """Same-shaped layers' (B, A, scale tensor) from ``factors`` stacked where they are, ranks below the largest
    padded with zeros (exact)."""
    import torch
    import torch.nn.functional as functional

    dtype = factors[names[0]][0].dtype  # one file, one dtype; a mixed one is brought to its first
    ups = [factors[name][0].to(dtype) for name in names]
    downs = [factors[name][1].to(dtype) for name in names]
    rank = max(down.shape[0] for down in downs)
    if any(down.shape[0] != rank for down in downs):
        ups = [functional.pad(up, (0, rank - up.shape[1])) for up in ups]
        downs = [functional.pad(down, (0, 0, 0, rank - down.shape[0])) for down in downs]
    scales = torch.stack([factors[name][2] for name in names]).view(-1, 1, 1)
    return torch.stack(ups), torch.stack(downs), scales


def to_device(tensors: list[Any], device: Any) -> list[Any]:
    """``tensors`` on ``device``, moved in one copy per dtype (flattened together, then viewed apart).

    To a GPU they are gathered in page-locked memory (torch's host allocator keeps such blocks for reuse, and holds a
    block back until the copy that reads it is done), so the copy runs without the host waiting on it.
    """
    import torch

    pinned = torch.device(device).type == "cuda"
    moved: list[Any] = [None] * len(tensors)
    for dtype in {tensor.dtype for tensor in tensors}:
        indices = [index for index, tensor in enumerate(tensors) if tensor.dtype == dtype]
        parts = [tensors[index].reshape(-1) for index in indices]
        gathered = torch.empty(sum(part.numel() for part in parts), dtype=dtype, pin_memory=pinned)
        flat = torch.cat(parts, out=gathered).to(device, non_blocking=pinned)
        for index, part in zip(indices, flat.split([tensors[index].numel() for index in indices]), strict=True):
            moved[index] = part.view(tensors[index].shape)
    return moved
