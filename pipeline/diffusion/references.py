"""Rendering from reference images, FLUX.2 [klein]'s multi-reference editing: previews from selfies, actions on klein.

klein reads reference images as extra tokens beside the noise (``Flux2KleinPipeline(image=[...])``) and renders what
they show in the scene the prompt describes. Two uses:
- the selfies, with no LoRA: a first look while the LoRA trains, or headshots without training at all. SDXL has no
  such input here (an IP-Adapter would need weights this project does not ship), so on SDXL there is no preview and
  the bot never asks for one;
- one headshot, with the user's LoRA on: klein's /more, /remix and /upscale (SDXL's go through image-to-image,
  ``img2img.py``). The headshot keeps composition and light, the prompt (a remix's words) changes what it says, new
  seeds vary the rest; an upscale renders at twice the size from it.

The references are square crops around each selfie's face, at most ``MAX_REFERENCES`` of them: every reference adds
its latent tokens to every denoising step, so a third photo costs more than it adds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.diffusion.families import Family, pipeline_family
from pipeline.diffusion.generation import GeneratedImage, generate_headshots
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.diffusion.training.dataset import crop_to
from pipeline.styles import Style
from pipeline.subject import Subject

__all__ = [
    "MAX_REFERENCES",
    "reference_crops",
    "render_from_headshot",
    "render_from_references",
    "supports_references",
]

MAX_REFERENCES = 2
# Reference side as a share of the model's native side: 512 px on klein's 1024 keeps a face's detail (the crop is
# mostly face) at a quarter of a full-size reference's tokens.
REFERENCE_SHARE = 0.5
MIN_REFERENCE_SIDE = 64  # Flux2ImageProcessor refuses smaller images


def supports_references(pipe: Any) -> bool:
    """Whether ``pipe`` renders a person from reference photos: FLUX.2 [klein], not SDXL."""
    return pipeline_family(pipe) is Family.FLUX2


def reference_crops(
    pipe: Any, selfies: Sequence[Image.Image], centers: Sequence[tuple[float, float]] | None = None
) -> list[Image.Image]:
    """Square crops around each selfie's face (``centers``: normalised face centres, else the middle), at
    ``REFERENCE_SHARE`` of the model's side; the first ``MAX_REFERENCES`` selfies."""
    if not selfies:
        raise ValueError("reference_crops needs at least one selfie; got none.")
    if centers is not None and len(centers) != len(selfies):
        raise ValueError(f"centers has {len(centers)} entries for {len(selfies)} selfies; give one per selfie.")
    # The pipeline trims each side to a multiple of the VAE factor times klein's 2x2 patches.
    multiple = pipe.vae_scale_factor * 2
    side = max(MIN_REFERENCE_SIDE, round(pipe.vae.config.sample_size * REFERENCE_SHARE / multiple) * multiple)
    picked = list(zip(selfies, centers or [(0.5, 0.5)] * len(selfies), strict=True))[:MAX_REFERENCES]
    return [crop_to(selfie.convert("RGB"), (side, side), center) for selfie, center in picked]


def render_from_references(
    pipe: Any,
    references: list[Image.Image],
    style: Style,
    *,
    count: int,
    seed: int,
    subject: Subject | None = None,
    steps: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    lora_slot: LoraSlot | None = None,
) -> list[GeneratedImage]:
    """``count`` headshots of ``style`` showing the person in ``references`` (``reference_crops``), no LoRA.

    The same call as a LoRA render (``generate_headshots``: seeds, batches, progress, stop, the OOM retry), with the
    references passed to the pipeline and the prompt naming the person in them. On a warm worker, pass its
    ``lora_slot``: the render then runs through the slot merged with zeros, the state its graphs were compiled in.
    """
    if not supports_references(pipe):
        raise ValueError(
            f"A {type(pipe).__name__} cannot render from reference photos; only FLUX.2 [klein] checkpoints can."
        )
    with lora_slot.merged_base() if lora_slot is not None else nullcontext():
        return generate_headshots(
            pipe,
            style,
            count=count,
            seed=seed,
            steps=steps,
            on_progress=on_progress,
            should_stop=should_stop,
            subject=subject or Subject(),
            references=references,
        )


def render_from_headshot(
    pipe: Any,
    headshot: Image.Image,
    style: Style,
    *,
    size: tuple[int, int],
    count: int,
    seed: int,
    lora_path: Path | None = None,
    lora_slot: LoraSlot | None = None,
    subject: Subject | None = None,
    steps: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[GeneratedImage]:
    """``count`` renders at ``size`` (width, height) from ``headshot`` as the one reference, the user's LoRA
    (``lora_path``) on: klein's actions on a headshot. Image ``i`` from seed ``seed + i``, as every render."""
    if not supports_references(pipe):
        raise ValueError(f"A {type(pipe).__name__} renders from a headshot by image-to-image (img2img.py), not here.")
    return generate_headshots(
        pipe,
        style,
        count=count,
        seed=seed,
        lora_path=lora_path,
        lora_slot=lora_slot,
        steps=steps,
        on_progress=on_progress,
        should_stop=should_stop,
        subject=subject,
        references=[_at_least(headshot.convert("RGB"), MIN_REFERENCE_SIDE)],
        size=size,
    )


def _at_least(image: Image.Image, side: int) -> Image.Image:
    """``image`` scaled up, aspect kept, until its shorter side is ``side`` (the pipeline refuses smaller ones)."""
    shorter = min(image.size)
    if shorter >= side:
        return image
    scale = side / shorter
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
