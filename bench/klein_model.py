"""FLUX.2 [klein] 4B's real architecture with random weights, built on the GPU, for benchmarks without the hub.

Compute depends on shapes, not weight values. The shapes are public: the transformer's config is diffusers'
``scripts/convert_flux2_to_diffusers.py`` (model type ``klein-4b``), the VAE is ``AutoencoderKLFlux2()`` at its
defaults (what that script converts into), the text encoder is Qwen3-4B (its ``config.json``). The tokenizer is the
tiny model's offline byte-level BPE (``pipeline.diffusion.flux2_tiny.qwen_tokenizer``), padded to klein's 512 tokens;
its ids fit Qwen3's 151936-row embedding. ``--tiny`` runs use the tiny klein checkpoint instead, on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["KLEIN_4B_TRANSFORMER_CONFIG", "QWEN3_4B_CONFIG", "describe_pipeline", "klein_pipelines"]

KLEIN_4B_TRANSFORMER_CONFIG: dict[str, Any] = {  # convert_flux2_to_diffusers.py, model_type "klein-4b"
    "patch_size": 1,
    "in_channels": 128,  # the VAE's 32 latent channels in 2x2 patches
    "num_layers": 5,
    "num_single_layers": 20,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 7680,  # three Qwen3-4B hidden-state layers of 2560, concatenated
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (32, 32, 32, 32),
    "rope_theta": 2000,
    "eps": 1e-6,
    "guidance_embeds": False,
}

QWEN3_4B_CONFIG: dict[str, Any] = {  # Qwen/Qwen3-4B config.json
    "vocab_size": 151936,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0,
    "tie_word_embeddings": True,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}

PROMPT_TOKENS = 512  # klein pads every prompt to 512 tokens


def klein_pipelines(*, tiny: bool, device: str, cache_dir: Path, seed: int = 0) -> tuple[Any, Any]:
    """Two ``Flux2KleinPipeline`` of one architecture, distilled: the project's, and a plain one for the baselines.

    They share the text encoder (neither changes it) and nothing else: the project's set-up compiles its VAE decoder
    and patches its transformer with a LoRA slot, which the plain one must not see.
    """
    if tiny:
        from pipeline.diffusion.loading import TINY_FLUX2_MODEL, load_base_pipeline

        project = load_base_pipeline(TINY_FLUX2_MODEL, device=device, cache_dir=cache_dir)
        plain = load_base_pipeline(TINY_FLUX2_MODEL, device=device, cache_dir=cache_dir)
        plain.text_encoder = project.text_encoder
        return project, plain
    project = _random_klein(device, seed=seed)
    return project, _random_klein(device, seed=seed + 10, text_encoder=project.text_encoder)


def _random_klein(device: str, *, seed: int, text_encoder: Any = None) -> Any:
    """Random weights, initialised on the device in float32 (seconds, where a CPU takes minutes for 8 B
    parameters), then cast to bfloat16 one model at a time, so the float32 copies never coexist."""
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from pipeline.diffusion.flux2_tiny import flux2_scheduler, qwen_tokenizer

    tokenizer = qwen_tokenizer()
    tokenizer.model_max_length = PROMPT_TOKENS
    torch.manual_seed(seed)

    def bf16(model: Any) -> Any:
        return model.to(torch.bfloat16)

    with torch.device(device):
        transformer = bf16(Flux2Transformer2DModel(**KLEIN_4B_TRANSFORMER_CONFIG))
        vae = bf16(AutoencoderKLFlux2())
        if text_encoder is None:
            config = Qwen3Config(**QWEN3_4B_CONFIG, pad_token_id=tokenizer.pad_token_id)
            text_encoder = bf16(Qwen3ForCausalLM(config))
    pipe: Any = Flux2KleinPipeline(
        scheduler=flux2_scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )
    for model in (transformer, vae, text_encoder):
        model.eval()  # as ``from_pretrained`` leaves a checkpoint; modules built from configs start in training mode
        model.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def describe_pipeline(pipe: Any) -> dict[str, Any]:
    """Parameter counts and the configs that decide the cost, for the JSON."""

    def count(model: Any) -> int:
        return sum(param.numel() for param in model.parameters())

    text = pipe.text_encoder.config.to_dict()
    return {
        "transformer_params": count(pipe.transformer),
        "transformer_config": {key: pipe.transformer.config[key] for key in KLEIN_4B_TRANSFORMER_CONFIG},
        "text_encoder_params": count(pipe.text_encoder),
        # transformers keeps rope_theta inside rope_parameters
        "text_encoder_config": {key: text.get(key) for key in [*QWEN3_4B_CONFIG, "rope_parameters"] if key in text},
        "vae_params": count(pipe.vae),
        "vae_latent_channels": pipe.vae.config.latent_channels,
        "vae_sample_size": pipe.vae.config.sample_size,
        "tokenizer_vocab": len(pipe.tokenizer),
        "prompt_tokens": int(pipe.tokenizer.model_max_length),
        "dtype": str(pipe.transformer.dtype).removeprefix("torch."),
    }
