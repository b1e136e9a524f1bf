"""Rendering from an image (variations, remixes, the hires pass of an upscale, the face pass) on the loaded pipeline.

The image-to-image pipeline is built from the worker's loaded text-to-image one's components: the same UNet, VAE and
text encoders (no second copy of the weights), so the user's LoRA in the ``LoraSlot`` and any compiled UNet apply to
it unchanged. It is built once per pipeline and kept on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.diffusion.adapters import (
    activate_only,
    new_adapter_name,
    remove_adapter,
    restore_active_adapters,
    snapshot_active_adapters,
)
from pipeline.diffusion.generation import GeneratedImage, GenerationCancelled, pil_images, scheduler_for
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.styles import Style
from pipeline.subject import Subject

__all__ = [
    "REMIX_STRENGTH",
    "UPSCALE_STRENGTH",
    "VARIATION_STRENGTH",
    "image_to_image",
    "img2img_pipeline",
    "render_from_images",
    "user_lora",
]

# How far each action moves away from its source (the share of the noise schedule re-rendered): a variation keeps
# pose and light and changes details; a remix keeps the composition and changes the scene; the hires pass of an
# upscale only adds detail.
VARIATION_STRENGTH = 0.35
REMIX_STRENGTH = 0.6
UPSCALE_STRENGTH = 0.3


def supports_actions(pipe: Any) -> bool:
    """Whether ``pipe`` renders from a headshot by image-to-image: SDXL (FP8 layers included). klein renders its
    actions from the headshot as a reference image instead (``references.render_from_headshot``)."""
    from pipeline.diffusion.families import Family, pipeline_family

    return pipeline_family(pipe) is Family.SDXL


def img2img_pipeline(pipe: Any) -> Any:
    """``pipe``'s image-to-image twin, sharing every component (made once, kept on ``pipe``)."""
    twin: Any = pipe.__dict__.get("_headshot_img2img")
    if twin is None:
        from diffusers import StableDiffusionXLImg2ImgPipeline

        # Not ``from_pipe``: it casts the pipeline it makes to float32 unless told a dtype, and the components are
        # shared, so a bf16 worker's UNet, VAE and text encoders all turned float32 at its first action (or the
        # warm-up's) and rendered ~3x slower, recompiling. Told a dtype, it would cast the training slot's float32
        # LoRA weights down instead. The constructor casts nothing.
        twin = StableDiffusionXLImg2ImgPipeline(
            **pipe.components,
            force_zeros_for_empty_prompt=pipe.config.force_zeros_for_empty_prompt,
            add_watermarker=getattr(pipe, "watermark", None) is not None,
        )
        twin.set_progress_bar_config(disable=True)
        twin.prepare_latents = _contiguous(twin.prepare_latents)
        pipe.__dict__["_headshot_img2img"] = twin
    return twin


def _contiguous(prepare_latents: Callable[..., Any]) -> Callable[..., Any]:
    """``prepare_latents`` returning contiguous latents. A GPU worker's VAE is channels-last, so it encodes the start
    image into channels-last latents, and a compiled UNet and VAE decoder guard on their input's strides: every action
    recompiled both (minutes on SDXL, at the worker's start) and ran graphs of its own. Contiguous, an action's
    shapes reuse the text-to-image graphs."""

    def prepare(*args: Any, **kwargs: Any) -> Any:
        return prepare_latents(*args, **kwargs).contiguous()

    return prepare


@contextmanager
def user_lora(pipe: Any, lora_path: Path | None, lora_slot: LoraSlot | None, *, scale: float = 1.0) -> Iterator[None]:
    """The user's LoRA in effect at ``scale`` for the block (in the slot, or as an adapter of its own), then gone."""
    if lora_path is None:
        yield
        return
    if lora_slot is not None:
        lora_slot.swap_in(Path(lora_path), scale=scale)
        try:
            yield
        finally:
            lora_slot.clear()
        return
    lora_path = Path(lora_path)
    active = snapshot_active_adapters(pipe)
    adapter = new_adapter_name("img2img")
    pipe.load_lora_weights(str(lora_path.parent), weight_name=lora_path.name, adapter_name=adapter)
    try:
        activate_only(pipe, adapter)
        pipe.set_adapters([adapter], adapter_weights=[scale])
        yield
    finally:
        restore_active_adapters(pipe, active)
        remove_adapter(pipe, adapter)


def render_from_images(
    pipe: Any,
    sources: Sequence[Image.Image],
    style: Style,
    *,
    strength: float,
    seeds: Sequence[int],
    steps: int | None = None,
    batch_size: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    subject: Subject | None = None,
) -> list[GeneratedImage]:
    """Render ``sources[i]`` again with ``style``'s prompt (naming ``subject``, as the LoRA was trained) from seed
    ``seeds[i]``, each at its own size.

    The LoRA is whatever is in effect on ``pipe`` (``user_lora``). ``strength`` (0-1] is the share of the schedule
    re-rendered; at least one step always runs. Sources of one batch must share a size; sizes must suit the model.
    """
    import torch

    # 1. Check inputs.
    if len(sources) != len(seeds):
        raise ValueError(f"sources and seeds must pair up, but there are {len(sources)} and {len(seeds)}.")
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], but is {strength}.")
    num_steps = style.steps if steps is None else steps
    # diffusers runs int(steps * strength) steps: never fewer than one.
    num_steps = max(num_steps, math.ceil(1 / strength))
    twin = img2img_pipeline(pipe)
    prompt = style.render_prompt((subject or Subject()).phrase())

    def check_stop(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if should_stop is not None and should_stop():
            pipeline._interrupt = True
        return tensors

    # 2. Render in batches of one size, the style's sampler set for the call only.
    results: list[GeneratedImage] = []
    twin.scheduler = scheduler_for(pipe, style.scheduler, pipe.scheduler)
    try:
        index = 0
        while index < len(sources):
            size = sources[index].size
            batch = [index]
            while len(batch) < batch_size and index + len(batch) < len(sources):
                if sources[index + len(batch)].size != size:
                    break
                batch.append(index + len(batch))
            images = twin(
                prompt=[prompt] * len(batch),
                negative_prompt=[style.negative_prompt] * len(batch),
                image=[sources[i].convert("RGB") for i in batch],
                strength=strength,
                num_inference_steps=num_steps,
                guidance_scale=style.guidance_scale,
                generator=[torch.Generator("cpu").manual_seed(seeds[i]) for i in batch],
                output_type="pt",  # converted to 8 bits on the device
                callback_on_step_end=check_stop if should_stop is not None else None,
            ).images
            images = pil_images(images)
            if should_stop is not None and should_stop():
                raise GenerationCancelled(f"Rendering stopped after {len(results)} of {len(sources)} images.")
            results.extend(GeneratedImage(image, seeds[i]) for image, i in zip(images, batch, strict=True))
            index += len(batch)
            if on_progress is not None:
                on_progress(len(results), len(sources))
    finally:
        twin.scheduler = pipe.scheduler
    return results


def image_to_image(
    pipe: Any,
    source: Image.Image,
    style: Style,
    *,
    strength: float,
    count: int,
    seed: int,
    size: tuple[int, int] | None = None,
    lora_path: Path | None = None,
    lora_slot: LoraSlot | None = None,
    steps: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    subject: Subject | None = None,
) -> list[GeneratedImage]:
    """``count`` renders of ``source`` (resized to ``size`` first), image ``i`` from seed ``seed + i``, LoRA on."""
    if count < 1:
        raise ValueError(f"count must be at least 1, but is {count}.")
    start = source.convert("RGB")
    if size is not None and start.size != size:
        start = start.resize(size, Image.Resampling.LANCZOS)
    with user_lora(pipe, lora_path, lora_slot):
        return render_from_images(
            pipe,
            [start] * count,
            style,
            strength=strength,
            seeds=[seed + index for index in range(count)],
            steps=steps,
            on_progress=on_progress,
            should_stop=should_stop,
            subject=subject,
        )
