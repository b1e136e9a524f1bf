"""The reference recipe the project is measured against: the common DreamBooth-LoRA training loop and a plain
``StableDiffusionXLPipeline`` call, both as the diffusers docs and example scripts write them."""

from __future__ import annotations

import time
from typing import Any

from PIL import Image

from bench.measure import measured, synchronize

__all__ = ["PROMPT", "naive_training_rate", "plain_generation"]

PROMPT = "a photo of sks person"


def naive_training_rate(pipe: Any, images: list[Image.Image], *, steps: int, warmup: int, rank: int) -> dict[str, Any]:
    """The reference DreamBooth-LoRA loop: VAE (fp32) and text encoders every step, batch 1, eager, unfused AdamW."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    from pipeline.diffusion.adapters import UNET_ATTENTION_TARGETS, new_adapter_name, remove_adapter

    device, unet, vae = pipe.unet.device, pipe.unet, pipe.vae
    resolution = unet.config.sample_size * pipe.vae_scale_factor
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    adapter = new_adapter_name("naive")
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=[*UNET_ATTENTION_TARGETS]),
        adapter_name=adapter,
    )
    params = [param for name, param in unet.named_parameters() if f".{adapter}." in name]
    for param in params:
        param.data = param.data.float()
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    vae_dtype = vae.dtype
    vae.to(torch.float32)  # the reference script keeps SDXL's VAE in fp32
    pixels = [
        torch.from_numpy(
            np.asarray(image.convert("RGB").resize((resolution, resolution)), dtype=np.float32) / 127.5 - 1
        )
        .permute(2, 0, 1)
        .unsqueeze(0)
        for image in images
    ]
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=device)
    unet.train()
    timed_from = 0.0
    try:
        with measured(str(device)) as total:
            for step in range(warmup + steps):
                if step == warmup:
                    synchronize(str(device))
                    timed_from = time.perf_counter()
                with torch.no_grad():
                    latents = vae.encode(pixels[step % len(pixels)].to(device)).latent_dist.sample()
                    latents = (latents * vae.config.scaling_factor).to(unet.dtype)
                    prompt_embeds, _, pooled, _ = pipe.encode_prompt(
                        PROMPT, device=device, do_classifier_free_guidance=False
                    )
                noise = torch.randn_like(latents)
                timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (1,), device=device)
                noisy = scheduler.add_noise(latents, noise, timesteps)
                conditions = {"text_embeds": pooled, "time_ids": time_ids.to(prompt_embeds.dtype)}
                with torch.autocast(device.type, dtype=unet.dtype, enabled=device.type == "cuda"):
                    prediction = unet(noisy, timesteps, prompt_embeds, added_cond_kwargs=conditions).sample
                loss = F.mse_loss(prediction.float(), noise.float())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            synchronize(str(device))
            timed_s = time.perf_counter() - timed_from
    finally:
        remove_adapter(pipe, adapter)
        unet.eval()
        unet.requires_grad_(False)
        vae.to(vae_dtype)
    return {"image_steps_per_s": steps / timed_s, "peak_gib": total.peak_gib}


def plain_generation(pipe: Any, *, batch: int, steps: int, width: int, height: int, repeats: int) -> dict[str, Any]:
    """A plain ``StableDiffusionXLPipeline`` call, as the diffusers docs show it: seconds per image after a warm-up."""
    import torch

    def render() -> None:
        pipe(
            prompt=[PROMPT] * batch,
            negative_prompt=["blurry"] * batch,
            num_inference_steps=steps,
            guidance_scale=6.0,
            width=width,
            height=height,
            generator=torch.Generator("cpu").manual_seed(0),
        )

    render()
    with measured(str(pipe.unet.device)) as timing:
        for _ in range(repeats):
            render()
    return {"s_per_image": timing.seconds / (repeats * batch), "peak_gib": timing.peak_gib}
