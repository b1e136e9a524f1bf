"""The project's side of the klein benchmark, and the timing both sides share.

Training is ``train_lora`` at the worker's batch plan; rendering is ``generate_headshots`` with a user's LoRA swapped
into the worker's ``LoraSlot``, on a pipeline set up as ``jobs.worker.model_setup.prepare_model`` sets up a klein
worker (the slot first, then ``compile_for_serving``: the whole transformer and the VAE decoder, warmed per batch).
"""

from __future__ import annotations

import inspect
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from bench.measure import free_memory, graph_count, measured, sample_images

__all__ = [
    "as_base_model",
    "accepted",
    "first_then_timed",
    "maths_switches_restored",
    "preview_figures",
    "project_training",
    "selfies_and_crops",
    "timed_calls",
    "user_lora",
]


def accepted(function: Callable[..., Any], **arguments: Any) -> dict[str, Any]:
    """Those of ``arguments`` that ``function`` takes: the worker's newer arguments (previews warmed at start,
    previews through the slot) where this tree's project has them, nothing where it is older."""
    parameters = inspect.signature(function).parameters
    return {name: value for name, value in arguments.items() if name in parameters}


def project_training(
    pipe: Any, images: list[Image.Image], *, resolution: int, optimizer_steps: int, rank: int, plan: Any
) -> dict[str, Any]:
    """``train_lora`` at the worker's ``plan``: the steady rate from its per-step reports (the first third left out,
    as warm-up). On a CUDA OOM it trains again at half the batch and reports the batches that did not fit."""
    import torch

    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import TrainingProgress, train_lora

    batch, failed = plan.batch_size, []
    while True:
        config = TrainingConfig(
            rank=rank,
            steps=optimizer_steps * batch,
            batch_size=batch,
            gradient_checkpointing=plan.gradient_checkpointing,
            resolution=resolution,
        )
        reports: list[TrainingProgress] = []
        try:
            with tempfile.TemporaryDirectory() as folder, measured(str(pipe.transformer.device)) as total:
                train_lora(pipe, images, config, Path(folder), on_progress=reports.append, progress_every=1)
            break
        except torch.cuda.OutOfMemoryError:
            failed.append(batch)
            if batch == 1:
                raise
        free_memory()  # outside the handler: the traceback that held the activations is gone
        batch //= 2
    steady = reports[max(1, len(reports) // 3) :]
    rate = (steady[-1].step - steady[0].step) / max(1e-9, steady[-1].elapsed_s - steady[0].elapsed_s)
    return {
        "image_steps_per_s": rate,
        "total_s": total.seconds,
        "fixed_s": max(0.0, total.seconds - config.steps / rate),  # encoding the set and prompt, first step, saving
        "peak_gib": total.peak_gib,
        "batch_size": batch,
        "oom_at_batch": failed,
        "gradient_checkpointing": plan.gradient_checkpointing,
        "rank": rank,
        "image_steps": config.steps,
    }


def user_lora(slot: Any, folder: Path, *, rank: int, scale: float = 0.01) -> Path:
    """A random LoRA of ``rank`` on the slot's layers, saved in the format the worker's training writes."""
    import torch
    from diffusers import Flux2KleinPipeline
    from peft import LoraConfig

    generator = torch.Generator("cpu").manual_seed(0)
    layers: dict[str, Any] = {}
    for name, layer in slot._layers.items():
        base = layer.base_layer
        layers[f"{name}.lora_A.weight"] = torch.randn(rank, base.in_features, generator=generator) * scale
        layers[f"{name}.lora_B.weight"] = torch.randn(base.out_features, rank, generator=generator) * scale
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(slot.target_modules))
    Flux2KleinPipeline.save_lora_weights(
        folder,
        transformer_lora_layers={key: value.to(torch.bfloat16) for key, value in layers.items()},
        transformer_lora_adapter_metadata=config.to_dict(),
        weight_name="user.safetensors",
        safe_serialization=True,
    )
    return folder / "user.safetensors"


def timed_calls(device: str, call: Callable[[], Any], *, repeats: int, images: int) -> dict[str, Any]:
    """``repeats`` calls (warm them up first): median seconds per image, each call, and graphs compiled meanwhile
    (a warm pipeline compiles none)."""
    graphs, seconds, peak = graph_count(), [], 0.0
    for _ in range(repeats):
        with measured(device) as one:
            call()
        seconds.append(one.seconds)
        peak = max(peak, one.peak_gib)
    return {
        "s_per_image": statistics.median(seconds) / images,
        "call_s": [round(value, 3) for value in seconds],
        "peak_gib": peak,
        "graphs_compiled": graph_count() - graphs,
    }


def first_then_timed(
    device: str, call: Callable[[], Any], *, repeats: int, images: int = 1, first: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """A first call on its own (``first``, else ``call``: it compiles, where anything does), then ``timed_calls``."""
    graphs = graph_count()
    with measured(device) as one:
        (first or call)()
    first_call = {"first_call_s": one.seconds, "first_call_graphs_compiled": graph_count() - graphs}
    return {**first_call, **timed_calls(device, call, repeats=repeats, images=images)}


def preview_figures(
    device: str, call: Callable[[], Any], references: list[Image.Image], *, repeats: int, images: int
) -> dict[str, Any]:
    """``first_then_timed`` for a preview of ``images`` images, with the sizes of the references it renders from
    (``call_s`` is what a user waits for the whole preview)."""
    sizes = [f"{image.width}x{image.height}" for image in references]
    figures = first_then_timed(device, call, repeats=repeats, images=images)
    return {"references": sizes, "images": images, "latency_s": figures["s_per_image"] * images, **figures}


@contextmanager
def as_base_model(pipe: Any) -> Iterator[None]:
    """``pipe`` samples as klein's undistilled base model (real CFG, many steps); the shapes stay the same."""
    pipe.register_to_config(is_distilled=False)
    try:
        yield
    finally:
        pipe.register_to_config(is_distilled=True)


@contextmanager
def maths_switches_restored() -> Iterator[None]:
    """Process-wide TF32 and cuDNN switches (``acceleration.use_fast_maths`` sets them for the worker) put back
    afterwards, so the plain pipeline measured later runs with torch's defaults, as a plain user's does."""
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def selfies_and_crops(pipe: Any) -> tuple[list[Image.Image], list[Image.Image]]:
    """Two portrait selfies at a phone photo's aspect (the pipeline shrinks anything above 1 MP), and their square
    crops at half the model's side: the references ``pipeline.diffusion.references`` renders from."""
    from pipeline.diffusion.training.dataset import crop_to

    native, multiple = pipe.vae.config.sample_size, pipe.vae_scale_factor * 2
    height = max(128, native * 5 // 4)
    side = max(64, round(native / 2 / multiple) * multiple)
    selfies = [image.resize((height * 3 // 4, height)) for image in sample_images(2)]
    return selfies, [crop_to(selfie, (side, side)) for selfie in selfies]
