"""DreamBooth-style LoRA training of the SDXL UNet on a user's selfies, leaving the shared base pipeline untouched.

Images and prompt are encoded once up front, so the loop runs only the UNet. The adapter lives on the pipeline's
own UNet for the length of the call and is removed in a ``finally``, whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from pipeline._adapters import new_adapter_name, remove_adapter
from pipeline.styles import IDENTIFIER_TOKEN

__all__ = [
    "LORA_WEIGHT_NAME",
    "TrainingCancelled",
    "TrainingConfig",
    "TrainingProgress",
    "TrainingResult",
    "train_lora",
]

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class TrainingConfig:
    """How to fine-tune; defaults suit 10-20 selfies on SDXL."""

    rank: int = 16
    steps: int = 400
    learning_rate: float = 1e-4
    batch_size: int = 1
    seed: int = 0
    resolution: int | None = None  # None: the model's own size (1024 on SDXL, 64 on the tiny model)
    prompt: str = f"a photo of {IDENTIFIER_TOKEN}"
    target_modules: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")

    def __post_init__(self) -> None:
        for field in ("rank", "steps", "batch_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainingConfig.{field} must be a positive integer, but is {value!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainingConfig.learning_rate must be positive, but is {self.learning_rate!r}.")
        if self.resolution is not None and (self.resolution < 8 or self.resolution % 8):
            raise ValueError(f"TrainingConfig.resolution must be a multiple of 8, but is {self.resolution!r}.")
        if not self.prompt.strip():
            raise ValueError("TrainingConfig.prompt is empty; it must name the subject, e.g. 'a photo of sks person'.")
        if not self.target_modules:
            raise ValueError("TrainingConfig.target_modules is empty; name at least one layer, e.g. 'to_q'.")


@dataclass(frozen=True)
class TrainingProgress:
    step: int
    total_steps: int
    loss: float
    elapsed_s: float
    eta_s: float


@dataclass(frozen=True)
class TrainingResult:
    lora_path: Path
    losses: list[float]
    steps: int
    seconds: float


class TrainingCancelled(Exception):
    """``should_stop`` asked training to end early; no LoRA file was written."""


def train_lora(
    pipe: Any,
    images: Sequence[Image.Image],
    config: TrainingConfig,
    output_dir: Path,
    *,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress_every: int = 10,
) -> TrainingResult:
    """Train a LoRA of ``images`` into ``output_dir / LORA_WEIGHT_NAME``; deterministic for a given seed.

    Not thread-safe: it temporarily changes ``pipe.unet``, so run one call at a time per pipeline.
    """
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionXLPipeline
    from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    # 1. Check inputs.
    if not images:
        raise ValueError("train_lora needs at least one image, but got none.")
    if progress_every < 1:
        raise ValueError(f"progress_every must be at least 1, but is {progress_every}.")
    started = time.monotonic()
    unet = pipe.unet
    device = unet.device
    resolution = config.resolution or unet.config.sample_size * pipe.vae_scale_factor
    generator = torch.Generator("cpu").manual_seed(config.seed)

    # 2. Encode once: every image and its mirror image (a face is near-symmetric, so this doubles the data),
    #    the prompt with both text encoders, and SDXL's size conditioning.
    with torch.no_grad():
        latents = _encode_images(pipe, images, resolution, generator)
        prompt_embeds, _, pooled_embeds, _ = pipe.encode_prompt(
            prompt=config.prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
    # (original height, width, crop top, left, target height, width): the same as generation's defaults.
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=device)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction_type = noise_scheduler.config.prediction_type

    # 3. Attach a fresh LoRA; only its weights train, in float32 even when the base model is half precision.
    adapter = new_adapter_name("train")
    unet.requires_grad_(False)
    lora_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.rank,
        init_lora_weights="gaussian",
        target_modules=list(config.target_modules),
    )
    losses: list[float] = []
    try:
        # The gaussian init draws from torch's global RNG: seed it privately so runs repeat and callers' RNG is kept.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            unet.add_adapter(lora_config, adapter_name=adapter)
        params = [param for name, param in unet.named_parameters() if f".{adapter}." in name]
        for param in params:
            param.data = param.data.float()
            param.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=1e-4)
        unet.train()

        # 4. Loop. Random draws come from one CPU generator, so runs repeat exactly on any device.
        for step in range(1, config.steps + 1):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"Training stopped at step {step - 1} of {config.steps}.")
            picks = torch.randint(0, latents.shape[0], (config.batch_size,), generator=generator)
            clean = latents[picks.to(latents.device)].to(device)
            noise = torch.randn(clean.shape, generator=generator).to(device)
            timesteps = torch.randint(
                0, noise_scheduler.config.num_train_timesteps, (config.batch_size,), generator=generator
            ).to(device)
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            target = noise if prediction_type == "epsilon" else noise_scheduler.get_velocity(clean, noise, timesteps)

            prediction = unet(
                noisy.to(unet.dtype),
                timesteps,
                encoder_hidden_states=prompt_embeds.repeat(config.batch_size, 1, 1),
                added_cond_kwargs={
                    "text_embeds": pooled_embeds.repeat(config.batch_size, 1),
                    "time_ids": time_ids.repeat(config.batch_size, 1).to(prompt_embeds.dtype),
                },
            ).sample
            loss = F.mse_loss(prediction.float(), target.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))

            if on_progress is not None and (step % progress_every == 0 or step == config.steps):
                elapsed = time.monotonic() - started
                on_progress(
                    TrainingProgress(
                        step=step,
                        total_steps=config.steps,
                        loss=losses[-1],
                        elapsed_s=elapsed,
                        eta_s=elapsed / step * (config.steps - step),
                    )
                )

        # 5. Save in diffusers' LoRA format, with the adapter config so alpha/rank survive loading.
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        state = get_peft_model_state_dict(unet, adapter_name=adapter)
        StableDiffusionXLPipeline.save_lora_weights(
            output_dir,
            unet_lora_layers=convert_state_dict_to_diffusers(state),
            unet_lora_adapter_metadata=unet.peft_config[adapter].to_dict(),
            weight_name=LORA_WEIGHT_NAME,
            safe_serialization=True,
        )
    finally:
        # 6. Leave the shared pipeline exactly as it was: no adapter, inference mode, nothing trainable.
        remove_adapter(pipe, adapter)
        unet.eval()
        unet.requires_grad_(False)

    return TrainingResult(
        lora_path=output_dir / LORA_WEIGHT_NAME,
        losses=losses,
        steps=config.steps,
        seconds=time.monotonic() - started,
    )


def _encode_images(pipe: Any, images: Sequence[Image.Image], resolution: int, generator: Any) -> Any:
    """Scaled float32 VAE latents of each image, centre-cropped to ``resolution``, and of its mirror image."""
    import numpy as np
    import torch

    vae = pipe.vae
    # SDXL's VAE overflows in float16 (config ``force_upcast``); encode in float32 as the pipeline decodes.
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    original_dtype = vae.dtype
    if upcast:
        vae.to(torch.float32)
    try:
        pixels = []
        for image in images:
            square = ImageOps.fit(image.convert("RGB"), (resolution, resolution), Image.Resampling.LANCZOS)
            for variant in (square, ImageOps.mirror(square)):
                array = np.asarray(variant, dtype=np.float32) / 127.5 - 1.0
                pixels.append(torch.from_numpy(array).permute(2, 0, 1))
        latents = []
        for start in range(0, len(pixels), 4):  # small chunks: a 1024px encode is memory-hungry
            chunk = torch.stack(pixels[start : start + 4]).to(vae.device, vae.dtype)
            latents.append(vae.encode(chunk).latent_dist.sample(generator=generator).float())
        return torch.cat(latents) * vae.config.scaling_factor
    finally:
        if upcast:
            vae.to(original_dtype)
