"""The training side of a worker's start: a second checkpoint to train on (``HEADSHOT_TRAIN_MODEL``), the training
memory plan, and the compiled ``TrainingSlot``, warmed for every aspect bucket (with CUDA graphs, then captured) and,
with ``HEADSHOT_TRAIN_FLOAT8``, training through FP8 rendering's layers. ``model_setup.prepare_model`` calls these in
its order."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from jobs.settings import Settings

if TYPE_CHECKING:
    from pipeline.diffusion.training.slot import TrainingSlot

__all__ = ["capture_order", "compile_training", "plan_with_settings", "training_pipeline", "training_plan"]

log = logging.getLogger(__name__)


def training_pipeline(pipe: Any, train_model: str, settings: Settings, device: str) -> Any:
    """``pipe`` with the denoiser of the checkpoint ``train_model`` in place of its own: one text encoder and one VAE
    serve both, so training costs only the second denoiser's memory. Raises ``ModelLoadError`` when the two are not
    the same architecture (a LoRA of one would not load into the other)."""
    from pipeline.diffusion.families import denoiser, pipeline_family
    from pipeline.diffusion.loading import load_base_pipeline
    from pipeline.errors import ModelLoadError

    loaded = load_base_pipeline(
        train_model, device=device, dtype=settings.dtype, cache_dir=settings.resolved_model_cache_dir
    )
    name = "transformer" if hasattr(pipe, "transformer") else "unet"
    ours, theirs = denoiser(pipe), denoiser(loaded)
    if pipeline_family(loaded) is not pipeline_family(pipe) or _architecture(ours) != _architecture(theirs):
        raise ModelLoadError(
            f"HEADSHOT_TRAIN_MODEL '{train_model}' is not the architecture of HEADSHOT_MODEL '{settings.model}' "
            f"({type(loaded).__name__} with a {type(theirs).__name__}, against {type(pipe).__name__}), so its LoRAs "
            "would not load for rendering; name the base twin of HEADSHOT_MODEL, or unset it."
        )
    extra = {"is_distilled": loaded.config.is_distilled} if name == "transformer" else {}
    trainer = type(pipe)(**{**pipe.components, name: theirs, "scheduler": loaded.scheduler, **extra})
    trainer.set_progress_bar_config(disable=True)
    log.info("LoRAs train on %s's %s", train_model, name)
    return trainer


def _architecture(model: Any) -> dict[str, Any]:
    """A denoiser's config without what names or files it (what decides whether a LoRA of one fits the other)."""
    return {key: value for key, value in dict(model.config).items() if not key.startswith("_")}


def training_plan(pipe: Any, settings: Settings) -> Any:
    """Batch size, checkpointing and CUDA graphs from the GPU's memory, unless the settings fix them."""
    from pipeline.diffusion.families import denoiser, pipeline_family
    from pipeline.diffusion.loading import gpu_memory_gib
    from pipeline.diffusion.training.memory_plan import memory_plan

    memory = gpu_memory_gib(denoiser(pipe).device)
    return plan_with_settings(memory_plan(memory, pipeline_family(pipe)), settings)


def plan_with_settings(plan: Any, settings: Settings) -> Any:
    """The memory ``plan`` with what the settings fix in its place. Graphs left unset follow the plan only up to the
    plan's own batch size: a larger batch's captured steps were never measured beside rendering."""
    from pipeline.diffusion.training.memory_plan import MemoryPlan

    batch_size = settings.train_batch_size or plan.batch_size
    graphs = settings.train_cuda_graphs
    return MemoryPlan(
        batch_size=batch_size,
        gradient_checkpointing=plan.gradient_checkpointing
        if settings.train_gradient_checkpointing is None
        else settings.train_gradient_checkpointing,
        cuda_graphs=plan.cuda_graphs and batch_size <= plan.batch_size if graphs is None else graphs,
    )


def compile_training(pipe: Any, plan: Any, settings: Settings, scope: str) -> tuple[TrainingSlot, float]:
    """A persistent training LoRA (the ``TrainingSlot``), its forward compiled now for every aspect bucket by one-step
    jobs on plain pictures (then zeroed), so no user's training waits for a compile; with CUDA graphs, each bucket's
    step is then captured by a second round of those jobs. Returns the slot and the seconds it took."""
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.dataset import WARM_UP_ORDER
    from pipeline.diffusion.training.slot import TrainingSlot

    started = time.monotonic()
    slot = TrainingSlot(
        pipe,
        rank=settings.lora_rank,
        compile_backend=settings.compile_backend,
        compile_scope=scope,
        cuda_graphs=plan.cuda_graphs,
    )
    config = TrainingConfig(
        rank=settings.lora_rank,
        steps=plan.batch_size,
        batch_size=plan.batch_size,
        gradient_checkpointing=plan.gradient_checkpointing,
    )
    with tempfile.TemporaryDirectory(prefix="warm-up-") as scratch:
        if settings.train_float8:  # before the warm-up compiles: its graphs are traced with the FP8 training layers
            layers, calibrated = _train_base_in_float8(pipe, slot, settings, Path(scratch))
            log.info("%d UNet layers train in FP8 (%d gradient scales calibrated)", layers, calibrated)
        # With graphs, every bucket is warmed before any is captured (``TrainingGraphs.warming``), then captured.
        # Compiled in ``WARM_UP_ORDER`` (by "blocks" they compile once, their token count a size from the first
        # shape on; by "regions" the first shape still gets graphs of its own); only the captures go largest first.
        with slot.graphs.warming() if slot.graphs is not None else contextlib.nullcontext():
            _train_every_bucket(pipe, config, slot, Path(scratch), "warmed", WARM_UP_ORDER)
        if slot.graphs is not None:
            _train_every_bucket(pipe, config, slot, Path(scratch), "captured", capture_order(pipe, config))
    return slot, time.monotonic() - started


def capture_order(pipe: Any, config: Any) -> list[tuple[int, int]]:
    """The aspect buckets by the size ``config`` trains them at, largest first: the order to capture them in.

    The captured graphs share one memory pool, and a capture reuses the blocks the captures before it freed only where
    they are big enough. Captured in the buckets' own order (square first), an H200 worker's pool grew from 97.6 to
    127.1 GiB at the second bucket, 4:5, whose latents are 2% larger, and not at all for the three after it, which
    are smaller; rendering then ran out of memory beside it (BENCHMARKS.md, 2026-12-04 second session). Largest
    first, no later capture asks for a block larger than the first one freed: the pool stayed at 99.9 GiB through
    all five captures, and the worker served a customer's training and 40 headshots (2026-12-04 third session).
    """
    from pipeline.diffusion.generation import headshot_size
    from pipeline.diffusion.training.dataset import BUCKET_ASPECTS

    def area(aspect: tuple[int, int]) -> int:
        width, height = headshot_size(pipe, aspect, native=config.resolution)
        return width * height

    return sorted(BUCKET_ASPECTS, key=area, reverse=True)


def _train_every_bucket(
    pipe: Any, config: Any, slot: Any, scratch: Path, done: str, aspects: Sequence[tuple[int, int]]
) -> None:
    """A one-step job on a plain picture of each aspect bucket (one latent shape each), in ``aspects``' order."""
    from pipeline.diffusion.training.loop import train_lora

    for width, height in aspects:
        bucket_started = time.monotonic()
        picture = Image.new("RGB", (width * 128, height * 128), "gray")
        # Not saved: nobody reads a warm-up's LoRA (on an H200 ~0.5 s went between each job's step and its end).
        train_lora(pipe, [picture], config, scratch, slot=slot, save=False)
        log.info("training %s for %dx%d in %.0f s", done, *picture.size, time.monotonic() - bucket_started)


def _train_base_in_float8(pipe: Any, slot: TrainingSlot, settings: Settings, scratch: Path) -> tuple[int, int]:
    """``HEADSHOT_TRAIN_FLOAT8``: the rendering FP8 layers train in FP8 too, their gradient scales calibrated on one
    eager training step (batch 1 on a plain picture, the slot's LoRA as a job draws it); returns the layers and the
    scales calibrated. The loss is a mean over the batch, so a job's batches send back smaller gradients than batch
    1 does, and only use less of the scales' headroom (``float8_training.GRADIENT_HEADROOM``)."""
    import torch

    from pipeline.diffusion.float8_scales import static_layers
    from pipeline.diffusion.float8_training import calibrate_float8_gradients, use_float8_training
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import train_lora

    if not any(layer.calibrated for layer in static_layers(pipe.unet).values()):
        raise ValueError(
            "HEADSHOT_TRAIN_FLOAT8=true trains through the FP8 layers and input scales of FP8 rendering, which this "
            "worker does not use; set HEADSHOT_RENDER_FLOAT8=true (an SDXL worker on a GPU with FP8 tensor cores), "
            "or unset HEADSHOT_TRAIN_FLOAT8."
        )
    layers = use_float8_training(pipe.unet)
    picture = Image.new("RGB", (1024, 1024), "gray")
    step = TrainingConfig(rank=settings.lora_rank, steps=1, batch_size=1)
    # Calibration records in eager code (compiling, and any training graphs' capture, come next).
    with torch.compiler.set_stance("force_eager"), slot.plain_steps():
        calibrated = calibrate_float8_gradients(
            pipe.unet, lambda: train_lora(pipe, [picture], step, scratch, slot=slot)
        )
    return layers, calibrated
