"""The training objective: a batch's denoising loss (Min-SNR weighted) and DreamBooth's prior-preservation term."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.dataset import TrainingSet

__all__ = ["batch_loss", "denoising_loss", "draw_batch", "sampled_batch_loss"]


def denoising_loss(
    forward: Callable[..., Any],
    noise_scheduler: Any,
    latents: Any,
    noise: Any,
    timesteps: Any,
    conditioning: tuple[Any, Any, Any],
    *,
    dtype: Any,
    min_snr_gamma: float | None,
) -> Any:
    """The denoising loss of one batch: noise ``latents`` to ``timesteps``, predict, compare, Min-SNR weight."""
    import torch.nn.functional as F

    embeds, pooled, time_ids = conditioning
    batch = latents.shape[0]
    prediction_type = noise_scheduler.config.prediction_type
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    target = noise if prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, timesteps)
    prediction = forward(
        noisy.to(dtype),
        timesteps,
        encoder_hidden_states=embeds.expand(batch, -1, -1),
        added_cond_kwargs={
            "text_embeds": pooled.expand(batch, -1),
            "time_ids": time_ids.expand(batch, -1).to(embeds.dtype),
        },
    ).sample
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if min_snr_gamma is not None:
        # SNR(t) = alpha_bar / (1 - alpha_bar); weight min(SNR, gamma) / SNR for epsilon, / (SNR + 1) for v.
        alpha_bar = noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
        snr = alpha_bar / (1 - alpha_bar)
        per_sample = per_sample * snr.clamp(max=min_snr_gamma) / (snr if prediction_type == "epsilon" else snr + 1)
    return per_sample.mean()


def draw_batch(
    noise_scheduler: Any, training_set: TrainingSet, config: TrainingConfig, generator: Any, device: Any
) -> dict[str, Any]:
    """Draw a batch (bucket, images, noise, timesteps, all from the CPU ``generator``, so runs repeat on any device):
    ``batch_loss``'s keyword arguments, on ``device``."""
    import torch

    from pipeline.diffusion.training.dataset import to_device

    bucket = training_set.pick_bucket(generator)
    picks = torch.randint(0, bucket.count, (config.batch_size,), generator=generator)
    latents = bucket.sample(picks, generator).to(device)
    noise = torch.randn(latents.shape, generator=generator)
    if config.noise_offset:
        noise += config.noise_offset * torch.randn((*latents.shape[:2], 1, 1), generator=generator)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (config.batch_size,), generator=generator)
    return {
        "latents": latents,
        "noise": to_device(noise, device),
        "timesteps": to_device(timesteps, device),
        "time_ids": to_device(bucket.time_ids, device),
    }


def batch_loss(
    forward: Callable[..., Any],
    noise_scheduler: Any,
    config: TrainingConfig,
    dtype: Any,
    *,
    latents: Any,
    noise: Any,
    timesteps: Any,
    time_ids: Any,
    embeds: Any,
    pooled: Any,
) -> Any:
    """``denoising_loss`` of a drawn batch (``draw_batch``) under a prompt's token and pooled embeddings; every
    tensor a keyword, so a CUDA graph of it (``training.graphs``) can take each as an input."""
    return denoising_loss(
        forward,
        noise_scheduler,
        latents,
        noise,
        timesteps,
        (embeds, pooled, time_ids),
        dtype=dtype,
        min_snr_gamma=config.min_snr_gamma,
    )


def sampled_batch_loss(
    forward: Callable[..., Any],
    noise_scheduler: Any,
    training_set: TrainingSet,
    prompt: tuple[Any, Any],
    config: TrainingConfig,
    generator: Any,
    device: Any,
    dtype: Any,
) -> Any:
    """Draw a batch (``draw_batch``) and return its denoising loss under ``prompt`` (token embeddings, pooled
    embedding)."""
    embeds, pooled = prompt
    batch = draw_batch(noise_scheduler, training_set, config, generator, device)
    return batch_loss(forward, noise_scheduler, config, dtype, **batch, embeds=embeds, pooled=pooled)
