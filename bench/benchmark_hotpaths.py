"""``python -m bench.benchmark_hotpaths``: the worker's two hot paths, variant against variant, in one process.

Where ``bench.benchmark`` compares the project with the naive recipe, this module compares the project's own
choices on the same warm pipeline, so each figure has its baseline from the same run:

- training: image-steps/s and GPU busy share (``nvidia-smi``) for batch 4 with a loss read every step (what a
  progress callback per step forces) vs every 10 steps, batch 8, and optionally the compiled forward;
- one ``/headshot`` request as the worker serves it (4 images, batch 4, the style's size, then PNG encoding):
  no LoRA at all (the base pipeline's pace), the LoRA slot with its LoRA layers running, the slot merged into the
  base weights, and optionally that on a compiled UNet, then with FP8 transformer layers; plus the VAE decode alone.

Run it under two ``PYTHONPATH`` roots to compare two versions of the training code (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.benchmark_unet import float8_error
from bench.measure import benchmark_pipeline, measured, sample_images

__all__ = ["main", "request_variant", "training_variant"]


def training_variant(
    pipe: Any,
    images: list[Any],
    *,
    batch: int,
    progress_every: int,
    image_steps: int,
    compile: bool = False,
    slot: Any = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Steady image-steps/s (the span between the first and the last progress report) and GPU busy share."""
    from bench.gpu_sampler import GpuSampler
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import TrainingProgress, train_lora

    reports: list[TrainingProgress] = []
    config = TrainingConfig(rank=16, steps=image_steps, batch_size=batch)
    gpus = GpuSampler.count_gpus() if str(pipe.unet.device).startswith("cuda") else 0
    forward = compiled_forward(pipe.unet) if compile else contextlib.nullcontext()
    with (
        tempfile.TemporaryDirectory() as folder,
        forward,
        GpuSampler(gpus) as sampler,
        measured(str(pipe.unet.device)) as m,
    ):
        train_lora(
            pipe, images, config, Path(folder), on_progress=reports.append, progress_every=progress_every, slot=slot
        )
    first, last = reports[0], reports[-1]
    return {
        "variant": label or ("compiled forward for this call" if compile else "fresh adapter, eager"),
        "batch": batch,
        "progress_every": progress_every,
        "compile": compile,
        "image_steps_per_s": round((last.step - first.step) / max(1e-9, last.elapsed_s - first.elapsed_s), 2),
        "first_report_s": round(first.elapsed_s, 1),
        "total_s": round(m.seconds, 1),
        "peak_gib": round(m.peak_gib, 1),
        "gpu_busy_percent": sampler.mean_utilisation(),
    }


@contextlib.contextmanager
def compiled_forward(unet: Any) -> Iterator[None]:
    """The UNet's forward compiled for one training call, which trains a fresh adapter through ``unet.forward``.

    Not how a worker trains: a fresh adapter's new layers recompile at every job, so a worker compiles once, in its
    ``TrainingSlot`` (``python -m bench.benchmark_training`` times that, as a worker sets it up).
    """
    import torch

    unet.forward = torch.compile(unet.forward)  # an instance attribute: ``unet.forward`` is the compiled one
    try:
        yield
    finally:
        del unet.forward


def request_variant(
    pipe: Any, lora: Path | None, *, label: str, slot: Any, png_level: int, repeats: int, steps: int
) -> dict[str, Any]:
    """Seconds for one 4-image request: LoRA in + render + LoRA out, then PNG encoding of the 4 images.

    The first request is timed on its own (``first_request_s``): it pays warm-up, and a compile where there is one.
    """
    from pipeline.diffusion.generation import generate_headshots
    from pipeline.styles import STYLES

    def serve() -> tuple[float, float, float]:
        with measured(str(pipe.unet.device)) as render:
            images = generate_headshots(
                pipe, STYLES["linkedin"], count=4, seed=7, lora_path=lora, batch_size=4, steps=steps, lora_slot=slot
            )
        started = time.perf_counter()
        for generated in images:
            generated.image.save(io.BytesIO(), format="PNG", compress_level=png_level)
        return render.seconds, time.perf_counter() - started, render.peak_gib

    first_s = sum(serve()[:2])
    timings = [serve() for _ in range(repeats)]
    render_s = sum(t[0] for t in timings) / repeats
    encode_s = sum(t[1] for t in timings) / repeats
    return {
        "variant": label,
        "png_level": png_level,
        "first_request_s": round(first_s, 1),
        "render_s": round(render_s, 2),
        "encode_s": round(encode_s, 2),
        "request_s": round(render_s + encode_s, 2),
        "s_per_image": round((render_s + encode_s) / 4, 3),
        "peak_gib": round(max(t[2] for t in timings), 1),
    }


def decode_seconds(pipe: Any, *, batch: int, repeats: int) -> dict[str, Any]:
    """The VAE decode alone for ``batch`` latents of the linkedin style's size: how much of a request it is."""
    import torch

    from pipeline.diffusion.generation import headshot_size
    from pipeline.styles import STYLES

    width, height = headshot_size(pipe, STYLES["linkedin"].aspect)
    factor = pipe.vae_scale_factor
    latents = torch.randn(batch, 4, height // factor, width // factor, device=pipe.vae.device, dtype=pipe.vae.dtype)
    seconds = []
    for _ in range(repeats + 1):  # the first is a warm-up
        with torch.no_grad(), measured(str(pipe.vae.device)) as decode:
            pipe.vae.decode(latents / pipe.vae.config.scaling_factor)
        seconds.append(decode.seconds)
    return {"variant": f"VAE decode alone, batch {batch}", "decode_s": round(sum(seconds[1:]) / repeats, 3)}


def request_variants(
    pipe: Any,
    images: list[Any],
    slot: Any,
    *,
    steps: int,
    compile_render: bool,
    record: Any,
    eager: bool = True,
    float8: bool = False,
) -> None:
    """No LoRA (the bare pipeline's pace), the slot with its LoRA layers running, the slot merged into the base
    (``eager``); with ``compile_render``, the merged slot on a compiled UNet and VAE decoder; with ``float8``, then
    the same with the UNet's transformer layers in FP8 (compiled again, as a worker would be)."""
    from pipeline.diffusion.acceleration import optimize_for_inference
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import train_lora

    def serve(label: str, path: Path | None, merge: bool) -> None:
        slot.merge = merge
        record("request", request_variant(pipe, path, label=label, slot=slot, png_level=1, repeats=2, steps=steps))

    with tempfile.TemporaryDirectory() as folder:
        lora = train_lora(pipe, images, TrainingConfig(rank=16, steps=8), Path(folder)).lora_path
        record("request", decode_seconds(pipe, batch=4, repeats=3))
        if eager:
            serve("no LoRA (base pipeline)", None, False)
            serve("slot, LoRA layers run (worker before)", lora, False)
            serve("slot merged into the base weights (worker now)", lora, True)
        if compile_render:
            optimize_for_inference(pipe)  # as a worker compiles the whole UNet (scope "unet")
            serve("slot merged, compiled UNet + VAE decode (first request compiles)", lora, True)
        if float8:
            record("request", float8_error(pipe))  # converts the layers; a compiled UNet recompiles for them
            compiled = "compiled" if compile_render else "eager"
            # The dynamic scheme (nothing to calibrate here); a worker's static one is timed by bench.benchmark_request.
            label = f"slot merged, {compiled}, transformer linears in FP8, dynamic scales (first request compiles)"
            serve(label, lora, True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_hotpaths", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--only", choices=("train", "request"), help="one half only")
    parser.add_argument("--image-steps", type=int, default=200, help="image-steps per training variant")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps per image")
    parser.add_argument("--compile-train", action="store_true", help="add the compiled training forward")
    parser.add_argument("--compile-render", action="store_true", help="add rendering on a compiled UNet (last)")
    parser.add_argument("--float8", action="store_true", help="add rendering with FP8 transformer layers (last)")
    parser.add_argument("--skip-eager", action="store_true", help="leave out the eager request variants")
    parser.add_argument("--out", type=Path, help="write the results as JSON here (rewritten after each figure)")
    args = parser.parse_args(argv)

    from pipeline.diffusion.loading import pick_device
    from pipeline.diffusion.lora_slot import LoraSlot

    pipe = benchmark_pipeline(args.model, pick_device())
    images = sample_images(10)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "model": args.model, "train": [], "request": []}

    def record(section: str, figures: dict[str, Any]) -> None:
        results[section].append(figures)
        print(section, json.dumps(figures), flush=True)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")

    if args.only in (None, "train"):
        variants = [(4, 1, False), (4, 10, False), (8, 10, False)] + ([(4, 10, True)] if args.compile_train else [])
        for batch, every, compiled in variants:
            figures = training_variant(
                pipe, images, batch=batch, progress_every=every, image_steps=args.image_steps, compile=compiled
            )
            record("train", figures)
    # A worker's rendering slot, for the request variants (made after the training variants' fresh adapters are gone).
    lora_slot = LoraSlot(pipe, max_rank=16)
    if args.only in (None, "request"):
        request_variants(
            pipe,
            images,
            lora_slot,
            steps=args.steps,
            compile_render=args.compile_render,
            record=record,
            eager=not args.skip_eager,
            float8=args.float8,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
