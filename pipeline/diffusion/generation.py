"""Rendering headshots in a style, with a user's LoRA attached for the length of one call.

Image ``i`` of a request always uses seed ``seed + i`` through its own generator, so any single image can be
rendered again on its own ("more like this") and comes out the same whatever batch it was part of. The LoRA either
comes and goes as its own adapter, or, on a warm (compiled) worker, is hot-swapped through a ``LoraSlot``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.diffusion.acceleration import is_qkv_fused
from pipeline.diffusion.adapters import (
    activate_only,
    new_adapter_name,
    remove_adapter,
    restore_active_adapters,
    snapshot_active_adapters,
)
from pipeline.diffusion.families import Family, pipeline_family
from pipeline.diffusion.flux2_rendering import flux2_call_arguments
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.errors import JobCancelled, OutOfGpuMemory
from pipeline.styles import Style
from pipeline.subject import Subject

__all__ = [
    "GenerationCancelled",
    "GeneratedImage",
    "denoise_looks",
    "generate_headshots",
    "headshot_size",
    "pil_images",
    "scheduler_for",
]


class GenerationCancelled(JobCancelled):
    """``should_stop`` asked rendering to end early; the images of the unfinished batch were dropped."""


@dataclass(frozen=True)
class GeneratedImage:
    image: Image.Image
    seed: int


def headshot_size(pipe: Any, aspect: tuple[int, int], *, native: int | None = None) -> tuple[int, int]:
    """(width, height) with ``aspect`` at about the model's native area, in sizes its denoiser and VAE accept.

    The native area (1024x1024 on SDXL and klein, 64x64 on the tiny models) is what the model composes best at; 4:5
    gives 928x1152 on SDXL and 56x72 on the tiny model. Each side is rounded to a multiple of 8 (the pipeline's rule)
    and of the VAE factor times the UNet's total downsampling (SDXL, so the skip connections line up) or times
    klein's 2x2 latent patches. ``native`` overrides the side of the square whose area is kept (training at a lower
    resolution uses it).
    """
    aspect_w, aspect_h = aspect
    if aspect_w <= 0 or aspect_h <= 0:
        raise ValueError(f"aspect must be two positive numbers, but is {aspect!r}.")
    if pipeline_family(pipe) is Family.FLUX2:
        native = native or pipe.vae.config.sample_size
        multiple = math.lcm(8, pipe.vae_scale_factor * 2)
    else:
        native = native or pipe.unet.config.sample_size * pipe.vae_scale_factor
        multiple = math.lcm(8, pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.down_block_types) - 1))
    scale = math.sqrt(native * native / (aspect_w * aspect_h))
    width = round(aspect_w * scale / multiple) * multiple
    height = round(aspect_h * scale / multiple) * multiple
    if width < multiple or height < multiple:
        raise ValueError(
            f"aspect {aspect_w}:{aspect_h} is too extreme for a {native}px model: it gives {width}x{height}, but "
            f"both sides must be at least {multiple}."
        )
    return width, height


def pil_images(images: Any) -> list[Image.Image]:
    """A pipeline's ``output_type="pt"`` images (N, 3, H, W, in [0, 1], on its device) as RGB PIL images.

    diffusers' own conversion (times 255 in float32, rounded half to even, 8 bits: ``VaeImageProcessor``), the same
    pixels, but done on the device, so only the 8-bit pixels cross to the host: diffusers' "pil" output copies the
    images there as floats and converts them on one CPU core while the GPU waits (BENCHMARKS.md, 2026-12-02 fifth
    session).
    """
    import torch

    pixels = (images.float() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return [Image.fromarray(one) for one in pixels]


DEFAULT_BATCH_SIZE = 4  # images per pipeline call; the denoiser sees twice as many with CFG


def generate_headshots(
    pipe: Any,
    style: Style,
    *,
    count: int,
    seed: int,
    lora_path: Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
    steps: int | None = None,
    lora_slot: LoraSlot | None = None,
    should_stop: Callable[[], bool] | None = None,
    subject: Subject | None = None,
    references: list[Image.Image] | None = None,
    size: tuple[int, int] | None = None,
) -> list[GeneratedImage]:
    """Render ``count`` images of ``style`` (image ``i`` from seed ``seed + i``), using the LoRA at ``lora_path``.

    ``subject`` is who the prompt names, as the LoRA was trained (default: a person). ``references`` (klein only,
    ``pipeline.diffusion.references``) are images the model reads beside the prompt: the selfies, for a render with
    no LoRA (the prompt then names the person they show), or a headshot an action starts from. ``size`` (width,
    height) overrides the style's headshot size (an upscale).

    ``steps`` overrides ``style.steps`` (on klein, the model's few-step default: ``flux2_rendering``).
    ``on_progress(done, count)`` runs after each batch. With ``lora_slot`` the
    LoRA is hot-swapped into the slot and the slot cleared afterwards (no recompilation on a compiled UNet);
    without, it is attached as a new adapter and removed. Not thread-safe: the LoRA and the style's scheduler are
    set on ``pipe`` for the call, so run one call at a time per pipeline. ``should_stop`` is asked after every
    denoising step; when it answers True the call ends within one step with ``GenerationCancelled``. A CUDA
    out-of-memory error is retried once at half the batch; a second one raises ``OutOfGpuMemory``.
    """
    import torch

    # 1. Check inputs and pick the family's way to call the pipeline.
    # Without a LoRA, the references alone say who it is; with one, its identifier does.
    from_photos = bool(references) and lora_path is None
    call = _call_arguments(pipe, style, steps, subject or Subject(), references, from_photos)
    _check_inputs(pipe, count, batch_size, call["num_inference_steps"], lora_path, lora_slot)
    width, height = size or headshot_size(pipe, style.aspect)
    original_scheduler = pipe.scheduler

    # 2. Attach the user's LoRA and the style's sampler; 3. render in batches; 4. always put both back, so the
    #    next user gets the clean base.
    adapter = None
    swapped = False
    active = snapshot_active_adapters(pipe)
    results: list[GeneratedImage] = []

    def check_stop(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        # diffusers skips the remaining denoising steps once ``_interrupt`` is set.
        if should_stop is not None and should_stop():
            pipeline._interrupt = True
        return tensors

    try:
        pipe.scheduler = _style_sampler(pipe, style.scheduler, original_scheduler)
        if lora_path is not None and lora_slot is not None:
            swapped = True
            lora_slot.swap_in(Path(lora_path))
        elif lora_path is not None:
            adapter = new_adapter_name("generate")
            lora_path = Path(lora_path)
            pipe.load_lora_weights(str(lora_path.parent), weight_name=lora_path.name, adapter_name=adapter)
            activate_only(pipe, adapter)  # only this user's LoRA, even where a slot's adapter is loaded too
        retried = False
        while len(results) < count:
            start = len(results)
            seeds = [seed + index for index in range(start, min(count, start + batch_size))]
            # CPU generators give the same starting noise on any GPU, so a seed means the same image everywhere.
            generators = [torch.Generator("cpu").manual_seed(one_seed) for one_seed in seeds]
            try:
                # One prompt (and negative prompt, where the family has one) per image; the rest as they are.
                per_image = {key: [value] * len(seeds) if key in _PROMPTS else value for key, value in call.items()}
                images = pipe(
                    **per_image,
                    width=width,
                    height=height,
                    generator=generators,
                    output_type="pt",  # converted to 8 bits on the device: ``pil_images``
                    callback_on_step_end=check_stop if should_stop is not None else None,
                ).images
                images = pil_images(images)
            except torch.cuda.OutOfMemoryError as error:
                # Another job's tensors, fragmentation or a big batch: free the cache and try half the batch, once.
                # Seeds stay per image, so the retried images are the very ones the full batch would have made.
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if retried:
                    raise OutOfGpuMemory(f"CUDA out of memory even {batch_size} at a time", batch=batch_size) from error
                retried = True
                batch_size = max(1, batch_size // 2)
                continue
            if should_stop is not None and should_stop():
                raise GenerationCancelled(f"Rendering stopped after {len(results)} of {count} images.")
            results.extend(
                GeneratedImage(image=image, seed=one_seed) for image, one_seed in zip(images, seeds, strict=True)
            )
            if on_progress is not None:
                on_progress(len(results), count)
    finally:
        pipe.scheduler = original_scheduler
        if swapped and lora_slot is not None:
            lora_slot.clear()
        if adapter is not None:
            restore_active_adapters(pipe, active)  # first, so the adapter removed is no longer active
            remove_adapter(pipe, adapter)
    return results


_PROMPTS = ("prompt", "negative_prompt")


def denoise_looks(pipe: Any, styles: Iterable[Style], *, seed: int, steps: int, batch_size: int) -> int:
    """Denoise one image of each of ``styles`` from ``seed``, as ``generate_headshots(pipe, style, count=1,
    seed=seed, steps=steps)`` would with no LoRA, but styles that share a size, a sampler and a guidance scale in one
    batch of up to ``batch_size``, and nothing decoded; returns how many pipeline calls it made.

    Each image keeps its own prompt, negative prompt and generator, so the denoiser sees what the one-image renders
    fed it (up to the batch's arithmetic). FP8 calibration records the largest inputs of these renders at a
    worker's start, where the eight looks of ten steps took 80 eager UNet calls and 8 decodes one at a time (their
    three guidance scales make 40 calls in batches of 4). Guidance stays per batch: it steers the latents, and so the
    inputs the calibration records.
    """
    import torch

    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for style in styles:
        call = _call_arguments(pipe, style, steps, Subject(), None, False)
        shared = {key: value for key, value in call.items() if key not in _PROMPTS}
        key = (headshot_size(pipe, style.aspect), style.scheduler, repr(sorted(shared.items())))
        groups.setdefault(key, []).append(call)
    original_scheduler = pipe.scheduler
    calls = 0
    try:
        for (size, scheduler, _), looks in groups.items():
            pipe.scheduler = _style_sampler(pipe, scheduler, original_scheduler)
            for start in range(0, len(looks), batch_size):
                batch = looks[start : start + batch_size]
                together = {key: value for key, value in batch[0].items() if key not in _PROMPTS}
                together.update({key: [look[key] for look in batch] for key in _PROMPTS if key in batch[0]})
                generators = [torch.Generator("cpu").manual_seed(seed) for _ in batch]
                pipe(**together, width=size[0], height=size[1], generator=generators, output_type="latent")
                calls += 1
    finally:
        pipe.scheduler = original_scheduler
    return calls


def _call_arguments(
    pipe: Any,
    style: Style,
    steps: int | None,
    subject: Subject,
    references: list[Image.Image] | None,
    from_photos: bool,
) -> dict[str, Any]:
    """The family's ``pipe(...)`` arguments for ``style``; ``from_photos``: the prompt names the person the
    references show."""
    named = subject.reference_phrase() if from_photos else subject.phrase()
    if pipeline_family(pipe) is not Family.FLUX2:
        if references:
            raise ValueError("references need a FLUX.2 [klein] pipeline; SDXL renders a person from a LoRA only.")
        return _sdxl_call_arguments(style, steps, named)
    call = flux2_call_arguments(pipe, style, steps, named)
    if references:
        call["image"] = references
    return call


def _sdxl_call_arguments(style: Style, steps: int | None, subject: str) -> dict[str, Any]:
    return {
        "prompt": style.render_prompt(subject),
        "negative_prompt": style.negative_prompt,
        "num_inference_steps": style.steps if steps is None else steps,
        "guidance_scale": style.guidance_scale,
    }


def _check_inputs(
    pipe: Any, count: int, batch_size: int, steps: int, lora_path: Path | None, lora_slot: LoraSlot | None
) -> None:
    """Raise naming the first argument of ``generate_headshots`` that cannot work, and its value."""
    if count < 1:
        raise ValueError(f"count must be at least 1, but is {count}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, but is {batch_size}.")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, but is {steps}.")
    if lora_path is not None and not Path(lora_path).is_file():
        raise FileNotFoundError(f"No LoRA weights at '{lora_path}'; train one first or pass lora_path=None.")
    if lora_slot is not None and lora_slot.pipe is not pipe:
        raise ValueError("lora_slot belongs to a different pipeline than the one passed as pipe.")
    if lora_path is not None and is_qkv_fused(pipe):
        raise ValueError(
            "This pipeline's attention projections are fused (fuse_qkv_projections), which would ignore a LoRA."
        )


def _style_sampler(pipe: Any, name: str, base: Any) -> Any:
    """The sampler a render of a style named ``name`` runs: ``scheduler_for`` it, but ``base`` on klein, which samples
    with its own flow-matching Euler (the styles' samplers are SDXL's)."""
    return base if pipeline_family(pipe) is Family.FLUX2 else scheduler_for(pipe, name, base)


def scheduler_for(pipe: Any, name: str, base: Any) -> Any:
    """The sampler ``name`` (one of ``pipeline.styles.SCHEDULERS``) built from ``base``'s config, reused per pipeline.

    Building one is cheap but not free (it precomputes its noise schedule), so instances are kept on the pipeline,
    keyed by name and the config they came from.
    """
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
    )

    cache: dict[str, tuple[Any, Any]] = pipe.__dict__.setdefault("_headshot_schedulers", {})
    cached = cache.get(name)
    if cached is not None and cached[0] is base.config:
        return cached[1]
    config = base.config
    if name == "euler":
        scheduler = EulerDiscreteScheduler.from_config(config, use_karras_sigmas=False)
    elif name == "euler_a":
        scheduler = EulerAncestralDiscreteScheduler.from_config(config)
    elif name in ("dpmpp_2m", "dpmpp_2m_karras"):
        scheduler = DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=name == "dpmpp_2m_karras"
        )
    elif name == "ddim":
        scheduler = DDIMScheduler.from_config(config)
    else:
        raise ValueError(f"Unknown scheduler {name!r}; pick one of: euler, euler_a, dpmpp_2m, dpmpp_2m_karras, ddim.")
    cache[name] = (config, scheduler)
    return scheduler
