"""The real SDXL base architecture built from its configs with random weights, for benchmarks without the hub.

Compute cost depends on shapes, not on weight values, so a random SDXL measures what the production model costs.
The configs are those of ``stabilityai/stable-diffusion-xl-base-1.0`` (UNet 2.6 B parameters, CLIP ViT-L and
OpenCLIP bigG text encoders, the SDXL VAE); the tokenizers are the offline byte-level
ones of ``pipeline.diffusion.sdxl_tiny``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipeline.diffusion.sdxl_tiny import sdxl_scheduler, write_tokenizer_files

__all__ = [
    "SDXL_TEXT_ENCODER_2_CONFIG",
    "SDXL_TEXT_ENCODER_CONFIG",
    "SDXL_UNET_CONFIG",
    "SDXL_VAE_CONFIG",
    "build_random_sdxl",
]

SDXL_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20),
    "transformer_layers_per_block": (1, 2, 10),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    # 6 size/crop ids embedded to 256 each, plus bigG's 1280-wide pooled text embedding.
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
}

SDXL_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}

SDXL_TEXT_ENCODER_CONFIG: dict[str, Any] = {  # CLIP ViT-L/14
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
}

SDXL_TEXT_ENCODER_2_CONFIG: dict[str, Any] = {  # OpenCLIP ViT-bigG/14
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "hidden_act": "gelu",
    "projection_dim": 1280,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
}


def build_random_sdxl(*, device: str = "cuda", dtype: str = "bfloat16", seed: int = 0) -> Any:
    """A ``StableDiffusionXLPipeline`` of SDXL base's exact shapes with seeded random weights, on ``device``."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch_dtype = getattr(torch, dtype)
    # 1. Tokenizers from the offline byte-level vocabulary; the ids they produce fit SDXL's 49408-token tables.
    with tempfile.TemporaryDirectory(prefix="sdxl-tokenizer-") as folder:
        vocab_size = write_tokenizer_files(Path(folder))
        tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
        tokenizer_2 = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
    special: dict[str, Any] = {
        "bos_token_id": vocab_size - 2,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1,
    }

    # 2. Models, initialised straight on the device (2.6 B UNet parameters initialise in seconds on a GPU).
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**SDXL_UNET_CONFIG)
        vae = AutoencoderKL(**SDXL_VAE_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SDXL_TEXT_ENCODER_CONFIG, **special))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**SDXL_TEXT_ENCODER_2_CONFIG, **special))
    pipe: Any = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=sdxl_scheduler(),
        force_zeros_for_empty_prompt=True,
    )
    # 3. Same precision as production loading: the whole pipeline in ``dtype`` (bf16 needs no VAE upcast fix).
    pipe.to(device, torch_dtype)
    models: list[Any] = [unet, vae, text_encoder, text_encoder_2]
    for model in models:
        model.eval()  # as ``from_pretrained`` leaves a checkpoint; modules built from configs start in training mode
    pipe.set_progress_bar_config(disable=True)
    return pipe
