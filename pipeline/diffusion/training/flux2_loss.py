"""FLUX.2 [klein]'s training objective: rectified flow matching on its patchified, batch-normalised latents.

A clean latent x and noise n are mixed as (1 - sigma) x + sigma n and the transformer predicts the velocity n - x,
as in diffusers' train_dreambooth_lora_flux2_klein.py with its default (uniform) timestep weighting. The training
set caches the VAE's latent distribution once (``training.dataset``); the klein-specific steps (2x2 patches, the
VAE's latent batch norm, packing into tokens with position ids) happen here, per batch, on the cached latents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.dataset import TrainingSet

__all__ = ["flow_matching_batch_loss", "normalized_latents"]


def normalized_latents(pipe: Any, latents: Any) -> Any:
    """VAE latents (B, C, H, W) as klein's transformer sees them: 2x2 patches, normalised by the VAE's batch norm."""
    import torch
    from diffusers import Flux2KleinPipeline

    patches = Flux2KleinPipeline._patchify_latents(latents)
    bn = pipe.vae.bn
    mean = bn.running_mean.view(1, -1, 1, 1).to(patches.device, patches.dtype)
    std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps).to(patches.device)
    return (patches - mean) / std.to(patches.dtype)


def flow_matching_batch_loss(
    forward: Callable[..., Any],
    noise_scheduler: Any,
    pipe: Any,
    training_set: TrainingSet,
    prompt: tuple[Any, Any],
    config: TrainingConfig,
    generator: Any,
    device: Any,
    dtype: Any,
) -> Any:
    """Draw a batch (bucket, images, noise, sigmas, all from the CPU ``generator``, so runs repeat on any device) and
    return its flow-matching loss under ``prompt`` (the pipeline's ``encode_prompt``: embeddings, text ids).

    ``noise_scheduler`` is a fresh copy of the pipeline's (rendering resets the pipeline's own to a few steps)."""
    import torch
    import torch.nn.functional as F
    from diffusers import Flux2KleinPipeline

    from pipeline.diffusion.training.dataset import to_device

    # 1. Clean latents of a batch from one bucket, and the noise and noise level of each.
    bucket = training_set.pick_bucket(generator)
    picks = torch.randint(0, bucket.count, (config.batch_size,), generator=generator)
    clean = normalized_latents(pipe, bucket.sample(picks, generator).to(device))
    noise = to_device(torch.randn(clean.shape, generator=generator), device)
    train_sigmas = noise_scheduler.sigmas  # unshifted while the scheduler shifts per resolution: 1 down to 1/1000
    indices = torch.randint(0, len(train_sigmas), (config.batch_size,), generator=generator)
    sigmas = to_device(train_sigmas[indices], device).view(-1, 1, 1, 1)

    # 2. Mix, pack into tokens, predict the velocity.
    noisy = (1.0 - sigmas) * clean + sigmas * noise
    ids = to_device(Flux2KleinPipeline._prepare_latent_ids(noisy), device)
    embeds, text_ids = prompt
    batch = clean.shape[0]
    prediction = forward(
        hidden_states=Flux2KleinPipeline._pack_latents(noisy).to(dtype),
        timestep=sigmas.flatten().to(dtype),  # the pipeline's timestep / 1000 is sigma
        guidance=None,
        encoder_hidden_states=embeds.expand(batch, -1, -1).to(dtype),
        txt_ids=text_ids.expand(batch, -1, -1),
        img_ids=ids,
        return_dict=False,
    )[0]
    prediction = Flux2KleinPipeline._unpack_latents_with_ids(prediction, ids, noisy.shape[2], noisy.shape[3])

    # 3. Compare with the straight path's velocity.
    return F.mse_loss(prediction.float(), (noise - clean).float())
