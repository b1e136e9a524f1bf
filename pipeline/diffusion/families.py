"""Which model family a checkpoint or a loaded pipeline belongs to, read from the checkpoint itself.

A checkpoint's ``model_index.json`` names its pipeline class; that, not a setting, decides how the worker loads,
trains and renders it. Family-specific code lives in modules named for the family (``sdxl_*``, ``flux2_*``).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pipeline.errors import ModelLoadError

__all__ = [
    "FLUX2_ATTENTION_TARGETS",
    "Family",
    "checkpoint_family",
    "default_lora_targets",
    "denoiser",
    "pipeline_family",
]

# FLUX.2's face LoRA, as diffusers' train_dreambooth_lora_flux2_klein.py trains it: the double-stream blocks'
# attention projections, and in every single-stream block the fused QKV+MLP input projection and the output projection
# (attention and MLP together). The single blocks' output is named per block below: ``attn.to_out`` alone would also
# match the double blocks' ``to_out`` list, which is no layer.
FLUX2_ATTENTION_TARGETS = ("to_k", "to_q", "to_v", "to_out.0", "to_qkv_mlp_proj")


class Family(StrEnum):
    SDXL = "sdxl"
    FLUX2 = "flux2"


# model_index.json's ``_class_name`` -> family. FLUX.2 [klein] base and distilled share one pipeline class.
_PIPELINE_CLASSES = {"StableDiffusionXLPipeline": Family.SDXL, "Flux2KleinPipeline": Family.FLUX2}


def checkpoint_family(source: str, *, cache_dir: Path, local: bool) -> tuple[Family, str]:
    """(family, pipeline class name) of the checkpoint at ``source`` (a folder, or a hub id fetched into
    ``cache_dir``). Raises ``ModelLoadError`` naming the class when it is no family this project serves."""
    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(source, cache_dir=str(cache_dir), local_files_only=local)
    except Exception as error:  # missing file, no network, no such repo: one actionable message
        where = "folder" if local else "hub id"
        raise ModelLoadError(
            f"Could not read model_index.json of the {where} '{source}' ({type(error).__name__}: {error}). "
            "Set HEADSHOT_MODEL to a diffusers SDXL or FLUX.2 [klein] checkpoint, or to 'tiny'."
        ) from error
    class_name = str(index.get("_class_name", ""))
    family = _PIPELINE_CLASSES.get(class_name)
    if family is None:
        raise ModelLoadError(
            f"The checkpoint '{source}' is a {class_name or 'pipeline of unknown class'}, which this bot cannot "
            f"train; use one of: {', '.join(_PIPELINE_CLASSES)}."
        )
    return family, class_name


def pipeline_family(pipe: Any) -> Family:
    """The family of a loaded pipeline, by its class (the one ``checkpoint_family`` read from the checkpoint)."""
    family = _PIPELINE_CLASSES.get(type(pipe).__name__)
    if family is None:
        raise ValueError(f"A {type(pipe).__name__} is no pipeline of this project; load it with load_base_pipeline.")
    return family


def denoiser(pipe: Any) -> Any:
    """The network that learns the face and that a LoRA patches: SDXL's UNet or FLUX.2's transformer."""
    return pipe.transformer if pipeline_family(pipe) is Family.FLUX2 else pipe.unet


def default_lora_targets(pipe: Any) -> tuple[str, ...]:
    """The layers a face LoRA trains, and a slot covers, on ``pipe``'s family."""
    from pipeline.diffusion.adapters import UNET_ATTENTION_TARGETS

    if pipeline_family(pipe) is Family.SDXL:
        return UNET_ATTENTION_TARGETS
    single_blocks = len(pipe.transformer.single_transformer_blocks)
    return (*FLUX2_ATTENTION_TARGETS, *(f"single_transformer_blocks.{i}.attn.to_out" for i in range(single_blocks)))
