"""The baselines the klein benchmark measures the project against, written from diffusers' own recipes.

Training: the per-step work of diffusers' ``examples/dreambooth/train_dreambooth_lora_flux2_klein.py`` (read at
huggingface/diffusers commit 58eb52c; comments name its lines), at the script's defaults with ``--cache_latents``
and ``--mixed_precision bf16``: its LoRA (rank 4, alpha 4, gaussian init, its target list), latents encoded once
(``latent_dist.mode()``), the instance prompt encoded once, the frozen transformer and the LoRA in bf16 under
accelerate's autocast, ``--train_batch_size`` 4, ``torch.optim.AdamW``, gradient clipping, a constant schedule. The
README's klein example adds memory savers (FP8 training, 8-bit Adam, gradient checkpointing, batch 1 with 4
accumulation steps) that a 141 GB GPU does not need and whose libraries the benchmark machine lacks.
Rendering: a plain ``Flux2KleinPipeline`` call as diffusers' docs write it.
"""

from __future__ import annotations

import time
from typing import Any

from PIL import Image

from bench.measure import measured, synchronize

__all__ = ["REFERENCE_TARGETS", "plain_render", "reference_training_rate"]

# Script lines 1300-1303: the double blocks' attention, every single block's fused input projection, and the output
# projections of single blocks 0-23 (klein 4B has 20; peft skips names that match nothing).
REFERENCE_TARGETS = (
    "to_k",
    "to_q",
    "to_v",
    "to_out.0",
    "to_qkv_mlp_proj",
    *(f"single_transformer_blocks.{i}.attn.to_out" for i in range(24)),
)
SCRIPT_TEXT_LAYERS = (10, 20, 30)  # --text_encoder_out_layers default
INSTANCE_PROMPT = "a photo of sks person"


def reference_training_rate(
    pipe: Any,
    images: list[Image.Image],
    *,
    resolution: int,
    steps: int,
    warmup: int,
    rank: int = 4,
    batch_size: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Image-steps per second of the script's training step at ``resolution``, after ``warmup`` steps."""
    import numpy as np
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3
    from peft import LoraConfig

    from pipeline.diffusion.adapters import activate_only, new_adapter_name, remove_adapter
    from pipeline.diffusion.flux2_rendering import prompt_length
    from pipeline.diffusion.training.dataset import crop_to

    transformer, vae = pipe.transformer, pipe.vae
    device = transformer.device
    weight_dtype = transformer.dtype  # bf16: the script casts the frozen transformer and VAE to it (1260-1270)
    generator = torch.Generator().manual_seed(seed)

    # 1. Set-up, as the script's lines 1185-1420: a fresh scheduler copy, the latent batch-norm statistics in
    #    float32 (read before the VAE is cast), the LoRA (its parameters stay in bf16: the script upcasts them only
    #    for fp16), AdamW on the trainable parameters, the constant learning-rate schedule.
    noise_scheduler_copy = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    bn_mean = vae.bn.running_mean.view(1, -1, 1, 1).float().to(device)
    bn_std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1).float() + vae.config.batch_norm_eps).to(device)
    adapter = new_adapter_name("reference")
    config = LoraConfig(
        r=rank, lora_alpha=rank, lora_dropout=0.0, init_lora_weights="gaussian", target_modules=list(REFERENCE_TARGETS)
    )
    transformer.requires_grad_(False)
    transformer.add_adapter(config, adapter_name=adapter)
    activate_only(pipe, adapter)
    params = [param for name, param in transformer.named_parameters() if f".{adapter}." in name]
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4, eps=1e-8)
    lr_scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=warmup + steps)
    autocast = torch.autocast(device.type, dtype=weight_dtype, enabled=device.type == "cuda")  # accelerate's bf16

    try:
        # 2. The caches (1524-1660): the instance prompt once; each image resized and cropped to the resolution,
        #    encoded once to the mode of its latent distribution, in the VAE's dtype.
        layers = SCRIPT_TEXT_LAYERS if pipe.text_encoder.config.num_hidden_layers >= max(SCRIPT_TEXT_LAYERS) else None
        with torch.no_grad():
            prompt_embeds, text_ids = pipe.encode_prompt(
                prompt=INSTANCE_PROMPT,
                device=device,
                max_sequence_length=prompt_length(pipe),
                **({"text_encoder_out_layers": layers} if layers else {}),  # the tiny model has 28 layers
            )
            pixel_values, latents_cache = [], []
            for image in images:
                crop = crop_to(image.convert("RGB"), (resolution, resolution))
                pixel_values.append(torch.from_numpy(np.asarray(crop, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1))
                latents_cache.append(vae.encode(pixel_values[-1][None].to(device, vae.dtype)).latent_dist.mode())

        def sigmas_for(timesteps: Any, n_dim: int, dtype: Any) -> Any:  # the script's get_sigmas (1767-1776)
            sigmas = noise_scheduler_copy.sigmas.to(device=device, dtype=dtype)
            schedule_timesteps = noise_scheduler_copy.timesteps.to(device)
            timesteps = timesteps.to(device)
            step_indices = [(schedule_timesteps == t).nonzero().item() for t in timesteps]
            sigma = sigmas[step_indices].flatten()
            while len(sigma.shape) < n_dim:
                sigma = sigma.unsqueeze(-1)
            return sigma

        # 3. The loop (1778-1903), one optimizer step per batch.
        transformer.train()
        order: list[int] = []
        timed_from = 0.0
        with measured(str(device)) as total:
            for step in range(warmup + steps):
                if step == warmup:
                    synchronize(str(device))
                    timed_from = time.perf_counter()
                if len(order) < batch_size:  # BucketBatchSampler: shuffled, whole batches only
                    order = torch.randperm(len(latents_cache), generator=generator).tolist()
                indices, order = order[:batch_size], order[batch_size:]
                # collate_fn still stacks the batch's pixels on the CPU each step, though the cached latents stand in
                torch.stack([pixel_values[index] for index in indices]).to(
                    memory_format=torch.contiguous_format
                ).float()
                prompts = prompt_embeds.repeat_interleave(len(indices), dim=0)
                ids = text_ids.repeat_interleave(len(indices), dim=0)
                model_input = torch.cat([latents_cache[index] for index in indices], dim=0)
                model_input = Flux2KleinPipeline._patchify_latents(model_input)
                model_input = (model_input - bn_mean) / bn_std
                model_input_ids = Flux2KleinPipeline._prepare_latent_ids(model_input).to(device=model_input.device)
                noise = torch.randn_like(model_input)
                bsz = model_input.shape[0]
                u = compute_density_for_timestep_sampling(
                    weighting_scheme="none", batch_size=bsz, logit_mean=0.0, logit_std=1.0, mode_scale=1.29
                )
                timestep_indices = (u * noise_scheduler_copy.config.num_train_timesteps).long()
                timesteps = noise_scheduler_copy.timesteps[timestep_indices].to(device=model_input.device)
                sigmas = sigmas_for(timesteps, model_input.ndim, model_input.dtype)
                noisy_model_input = (1.0 - sigmas) * model_input + sigmas * noise
                packed_noisy_model_input = Flux2KleinPipeline._pack_latents(noisy_model_input)
                with autocast:
                    model_pred = transformer(
                        hidden_states=packed_noisy_model_input,
                        timestep=timesteps / 1000,
                        guidance=None,  # klein has no guidance embedding
                        encoder_hidden_states=prompts,
                        txt_ids=ids,
                        img_ids=model_input_ids,
                        return_dict=False,
                    )[0]
                model_pred = model_pred.float()  # accelerate's convert_outputs_to_fp32
                model_pred = model_pred[:, : packed_noisy_model_input.size(1) :]
                model_pred = Flux2KleinPipeline._unpack_latents_with_ids(model_pred, model_input_ids)
                weighting = compute_loss_weighting_for_sd3(weighting_scheme="none", sigmas=sigmas)
                target = noise - model_input
                loss = torch.mean(
                    (weighting.float() * (model_pred.float() - target.float()) ** 2).reshape(target.shape[0], -1), 1
                ).mean()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)  # accelerator.clip_grad_norm_
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
                loss.detach().item()  # the script logs the loss every step
            synchronize(str(device))
            timed_s = time.perf_counter() - timed_from
    finally:
        remove_adapter(pipe, adapter)
        transformer.eval()
        transformer.requires_grad_(False)
    return {
        "image_steps_per_s": steps * batch_size / timed_s,
        "peak_gib": total.peak_gib,
        "batch_size": batch_size,
        "rank": rank,
        "lora_params": sum(param.numel() for param in params),
        "timed_image_steps": steps * batch_size,
        "text_encoder_out_layers": list(layers or (9, 18, 27)),
    }


def plain_render(
    pipe: Any,
    prompt: str,
    *,
    batch: int,
    steps: int,
    guidance_scale: float,
    size: tuple[int, int],
    images: list[Image.Image] | None = None,
) -> None:
    """One plain ``Flux2KleinPipeline`` call: one prompt, ``batch`` images of it, PIL out (``images``: references)."""
    import torch

    from pipeline.diffusion.flux2_rendering import prompt_length

    width, height = size
    pipe(
        prompt=prompt,
        image=images,
        num_images_per_prompt=batch,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        max_sequence_length=prompt_length(pipe),  # klein's 512 at full size, as the pipeline's default
        generator=torch.Generator("cpu").manual_seed(0),
    )
