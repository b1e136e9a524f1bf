"""The LoRA a training job trains: attached to the denoiser (and any text encoders), the only trainable weights,
in float32; then saved in the format the family's ``load_lora_weights`` reads (``training.loop`` runs both)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.diffusion.adapters import activate_only, skip_lora_input_casts
from pipeline.diffusion.families import Family
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.slot import reset_lora

__all__ = ["LORA_WEIGHT_NAME", "TEXT_ENCODER_TARGETS", "attach_lora", "save_lora"]

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def attach_lora(
    pipe: Any,
    models: list[Any],
    adapter: str,
    config: TrainingConfig,
    targets: Sequence[str],
    *,
    fresh: bool,
    autocast: bool,
) -> list[Any]:
    """Make ``adapter`` the only active adapter, initialised from ``config.seed``; return its weights (in float32),
    the only trainable parameters. ``models`` are the denoiser, then any text encoders; ``fresh`` adds the adapter to
    them first (a ``TrainingSlot``'s is there already, its input casts skipped on CUDA), without peft's input casts
    where it trains under ``autocast``."""
    import torch
    from peft import LoraConfig

    unet, *text_models = models
    # The gaussian init draws from torch's global RNG: seed it privately so runs repeat and callers' RNG is kept.
    with torch.random.fork_rng(devices=[]):
        if fresh:
            per_model = [(unet, targets), *((m, TEXT_ENCODER_TARGETS) for m in text_models)]
            for model, modules in per_model:
                lora = LoraConfig(
                    r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian", target_modules=[*modules]
                )
                model.add_adapter(lora, adapter_name=adapter)
                if autocast:
                    skip_lora_input_casts(model, adapter)
        torch.manual_seed(config.seed)
        reset_lora(models, adapter)
    activate_only(pipe, adapter)
    params = []
    for model in models:
        model.requires_grad_(False)
        for name, param in model.named_parameters():
            if f".{adapter}." in name:
                param.data = param.data.float()
                param.requires_grad_(True)
                params.append(param)
    return params


def save_lora(pipe: Any, family: Family, adapter: str, text_models: list[Any], output_dir: Path) -> None:
    """The LoRA in the format the family's ``load_lora_weights`` reads, with each adapter's config (rank, alpha)."""
    from diffusers import Flux2KleinPipeline, StableDiffusionXLPipeline
    from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    output_dir.mkdir(parents=True, exist_ok=True)
    if family is Family.FLUX2:
        # peft's own key names, which the transformer loader reads as they are (as diffusers' klein script saves).
        Flux2KleinPipeline.save_lora_weights(
            output_dir,
            transformer_lora_layers=get_peft_model_state_dict(pipe.transformer, adapter_name=adapter),
            transformer_lora_adapter_metadata=pipe.transformer.peft_config[adapter].to_dict(),
            weight_name=LORA_WEIGHT_NAME,
            safe_serialization=True,
        )
        return
    layers: dict[str, Any] = {}
    for key, model in [("unet", pipe.unet), *zip(("text_encoder", "text_encoder_2"), text_models, strict=False)]:
        layers[f"{key}_lora_layers"] = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(model, adapter_name=adapter)
        )
        layers[f"{key}_lora_adapter_metadata"] = model.peft_config[adapter].to_dict()
    StableDiffusionXLPipeline.save_lora_weights(
        output_dir, weight_name=LORA_WEIGHT_NAME, safe_serialization=True, **layers
    )
