"""DreamBooth-style LoRA training of the denoiser on a user's selfies, leaving the shared base pipeline untouched.

One loop for both families: SDXL's UNet learns to predict noise (``training.loss``), FLUX.2 [klein]'s transformer
the flow-matching velocity (``training.flux2_loss``); everything around the objective (cached training set, buckets,
prompt cache, progress, cancel, saving in diffusers' format, cleanup) is shared. Images are encoded once up front
(``encode_training_set``) and the prompt too, unless SDXL's text encoders train as well, so the loop runs only the
denoiser. The adapter lives on the pipeline's own models for the length of the call and
is removed in a ``finally``, whatever happens. The same code trains SDXL on a GPU (bfloat16 base under autocast,
float32 LoRA weights, fused AdamW; compiled in a worker's ``TrainingSlot``) and the tiny model on a CPU.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.diffusion.adapters import (
    new_adapter_name,
    remove_adapter,
    restore_active_adapters,
    snapshot_active_adapters,
)
from pipeline.diffusion.families import Family, default_lora_targets, denoiser, pipeline_family
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.dataset import TrainingSet, encode_training_set
from pipeline.diffusion.training.flux2_loss import flow_matching_batch_loss
from pipeline.diffusion.training.lora_layers import LORA_WEIGHT_NAME, TEXT_ENCODER_TARGETS, attach_lora, save_lora
from pipeline.diffusion.training.loss import sampled_batch_loss
from pipeline.diffusion.training.slot import TRAINING_ADAPTER, TrainingSlot
from pipeline.diffusion.training.steps import GraphedSteps, PlainSteps, graphable
from pipeline.errors import JobCancelled

__all__ = [
    "LORA_WEIGHT_NAME",
    "TEXT_ENCODER_TARGETS",
    "TrainingCancelled",
    "TrainingProgress",
    "TrainingResult",
    "TrainingSet",
    "encode_training_set",
    "train_lora",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingProgress:
    step: int  # images seen so far
    total_steps: int
    loss: float
    elapsed_s: float
    eta_s: float


@dataclass(frozen=True)
class TrainingResult:
    lora_path: Path
    losses: list[float]  # one per optimizer step
    steps: int  # images seen
    seconds: float


class TrainingCancelled(JobCancelled):
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
    crop_centers: Sequence[tuple[float, float]] | None = None,
    class_images: Sequence[Image.Image] | None = None,
    slot: TrainingSlot | None = None,
    save: bool = True,
) -> TrainingResult:
    """Train a LoRA of ``images`` into ``output_dir / LORA_WEIGHT_NAME``; deterministic for a given seed.

    ``on_progress`` runs every ``progress_every`` optimizer steps and after the last. ``crop_centers`` are optional
    normalised (x, y) centres, one per image, that crops keep in view (e.g. the face). ``class_images`` (e.g. the base
    model's own renders of ``config.class_prompt``) turn on prior preservation; ``steps`` still counts only the
    user's images. With ``slot`` (a worker's ``TrainingSlot``) the LoRA trains in the slot, through its one compiled
    forward, instead of in an adapter attached for this call. ``save=False`` writes nothing (a worker's warm-up jobs,
    whose LoRA nobody reads; ``lora_path`` then names a file that does not exist). Not thread-safe: it
    temporarily changes ``pipe``'s models, so run one call at a time per pipeline.
    """
    import torch

    # 1. Check inputs.
    family = pipeline_family(pipe)
    targets = config.target_modules or default_lora_targets(pipe)
    _check_inputs(images, config, progress_every, slot, family, targets)
    started = time.monotonic()
    unet = denoiser(pipe)  # SDXL's UNet or klein's transformer: the network the LoRA trains
    device = unet.device
    generator = torch.Generator("cpu").manual_seed(config.seed)

    # 2. Encode once: every image and its mirror image (a face is near-symmetric, so this doubles the data), grouped
    #    by aspect bucket, and, unless the text encoders train, the prompt.
    training_set = encode_training_set(pipe, images, config.resolution, crop_centers=crop_centers)
    selfies_s = _clock(device) - started
    text_models = [pipe.text_encoder, pipe.text_encoder_2] if config.text_encoder_lora else []
    with torch.no_grad():
        fixed_prompt = None if text_models else _encode_prompt(pipe, config.prompt)
    prior = None
    if class_images:
        prior = encode_training_set(pipe, class_images, config.resolution)
        with torch.no_grad():
            class_prompt = _encode_prompt(pipe, config.class_prompt)
    # Timings of each phase go to the log (never the images): a slow first step is a compile, a slow encode the VAE
    # or the cropping (the pictures), a slow set-up the LoRA attached and the optimizer made.
    encoded_s = _clock(device) - started
    set_up_s = first_step_s = 0.0

    # 3. Attach fresh LoRAs, the only active adapters; only their weights train, in float32 even when the base model
    #    is half precision (autocast mixes the two on CUDA; peft casts the LoRA path's input on CPU).
    adapter = TRAINING_ADAPTER if slot is not None else new_adapter_name("train")
    active_before = snapshot_active_adapters(pipe)
    half = unet.dtype in (torch.float16, torch.bfloat16)
    autocast = torch.autocast("cuda", dtype=unet.dtype) if device.type == "cuda" and half else contextlib.nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and unet.dtype == torch.float16)
    checkpointing_was_on = unet.is_gradient_checkpointing
    step_losses: list[Any] = []
    losses: list[float] = []
    try:
        under_autocast = isinstance(autocast, torch.autocast)
        params = attach_lora(
            pipe, [unet, *text_models], adapter, config, targets, fresh=slot is None, autocast=under_autocast
        )
        fused = True if device.type == "cuda" else None  # one fused kernel per step instead of one per tensor
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=1e-4, fused=fused)
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        # ``unet.forward``, not ``unet(...)``: an inference-compiled UNet (optimize_for_inference) keeps its graphs.
        forward = slot.forward if slot is not None else unet.forward  # the slot's is compiled once per worker
        steps: PlainSteps | GraphedSteps
        if slot is not None and slot.graphs is not None and graphable(config, prior, fixed_prompt, scaler, autocast):
            steps = GraphedSteps(slot.graphs, forward, pipe, config, fixed_prompt, unet.dtype)
        else:
            prompts = (fixed_prompt, class_prompt if prior is not None else None)
            encode = functools.partial(_encode_prompt, pipe, config.prompt)  # each step, when text encoders train
            steps = PlainSteps(_objective(pipe, family, forward), unet.dtype, config, prompts, prior, autocast, encode)

        set_up_s = _clock(device) - started - encoded_s
        # 4. Loop: each batch from one aspect bucket. Random draws come from one CPU generator, so runs repeat
        #    exactly on any device.
        total = config.optimizer_steps
        for step in range(1, total + 1):
            seen = min(step * config.batch_size, config.steps)
            if should_stop is not None and should_stop():
                done = min((step - 1) * config.batch_size, config.steps)
                raise TrainingCancelled(f"Training stopped at step {done} of {config.steps}.")
            loss = steps.step(training_set, generator, device, optimizer, scaler)  # forward, loss, backward
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
            # Kept on the device; only progress reports read one. Reading every step waits for the GPU each step
            # (measured harmless so far, BENCHMARKS.md second session: the step is bound by the host queueing kernels).
            step_losses.append(loss.detach())
            if step == 1:
                first_step_s = _clock(device) - started - encoded_s - set_up_s

            if on_progress is not None and (step % progress_every == 0 or step == total):
                elapsed = time.monotonic() - started
                eta = elapsed / seen * (config.steps - seen)
                on_progress(TrainingProgress(seen, config.steps, float(step_losses[-1]), elapsed, eta))
        losses = [float(value) for value in torch.stack(step_losses).float().cpu()]
        loop_s = time.monotonic() - started - encoded_s - set_up_s
        log.info(
            "trained %d image-steps in %.1f s: encoding %.1f s (the pictures %.1f s), LoRA and optimizer set up in "
            "%.1f s, first step %.1f s, the other %d steps %.1f s",
            config.steps,
            encoded_s + set_up_s + loop_s,
            encoded_s,
            selfies_s,
            set_up_s,
            first_step_s,
            total - 1,
            loop_s - first_step_s,
        )

        # 5. Save in diffusers' LoRA format, with the adapter configs so alpha/rank survive loading.
        output_dir = Path(output_dir)
        if save:
            save_lora(pipe, family, adapter, text_models, output_dir)
    finally:
        # 6. Leave the shared pipeline exactly as it was: no new adapter, the slot (if any) active again, inference
        #    mode, nothing trainable.
        if config.gradient_checkpointing and not checkpointing_was_on:
            unet.disable_gradient_checkpointing()
        restore_active_adapters(pipe, active_before)  # first, so the adapter removed is no longer active
        if slot is not None:
            slot.clear()
        else:
            remove_adapter(pipe, adapter)
        unet.eval()
        for model in (unet, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
            if model is not None:
                model.requires_grad_(False)

    return TrainingResult(
        lora_path=output_dir / LORA_WEIGHT_NAME, losses=losses, steps=config.steps, seconds=time.monotonic() - started
    )


def _clock(device: Any) -> float:
    """``time.monotonic()`` once ``device`` has done what was queued on it: the log's phases are the GPU's, not the
    host's queueing (one wait each, a handful a job)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.monotonic()


def _check_inputs(
    images: Sequence[Image.Image],
    config: TrainingConfig,
    progress_every: int,
    slot: TrainingSlot | None,
    family: Family,
    targets: Sequence[str],
) -> None:
    if not images:
        raise ValueError("train_lora needs at least one image, but got none.")
    if progress_every < 1:
        raise ValueError(f"progress_every must be at least 1, but is {progress_every}.")
    if family is Family.FLUX2 and config.text_encoder_lora:
        raise ValueError("text_encoder_lora=True trains CLIP text encoders, which FLUX.2 has not; leave it False.")
    if family is Family.FLUX2 and slot is not None:
        raise ValueError("A TrainingSlot is built for SDXL's UNet; train FLUX.2 without one (slot=None).")
    if slot is not None:
        slot.check(config.rank, targets, config.text_encoder_lora)


def _objective(pipe: Any, family: Family, forward: Callable[..., Any]) -> Callable[..., Any]:
    """The family's batch loss as ``loss(training_set, prompt, config, generator, device, dtype)``, bound to a fresh
    copy of the training noise schedule (rendering changes the pipeline's own scheduler's steps)."""
    if family is Family.FLUX2:
        from diffusers import FlowMatchEulerDiscreteScheduler

        flow = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
        return functools.partial(flow_matching_batch_loss, forward, flow, pipe)
    from diffusers import DDPMScheduler

    return functools.partial(sampled_batch_loss, forward, DDPMScheduler.from_config(pipe.scheduler.config))


def _encode_prompt(pipe: Any, prompt: str) -> tuple[Any, Any]:
    """The prompt as the denoiser takes it, batch of one: SDXL's (token embeddings, pooled embedding) from both
    text encoders, or klein's (Qwen3 hidden states, text position ids)."""
    device = denoiser(pipe).device
    if pipeline_family(pipe) is Family.FLUX2:
        from pipeline.diffusion.flux2_rendering import prompt_length

        embeds, text_ids = pipe.encode_prompt(
            prompt=prompt, device=device, num_images_per_prompt=1, max_sequence_length=prompt_length(pipe)
        )
        return embeds, text_ids
    embeds, _, pooled, _ = pipe.encode_prompt(
        prompt=prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    return embeds, pooled
