"""``python -m bench.klein_profile``: where FLUX.2 [klein] 4B's time goes, for the targets the one-run table missed.

On klein 4B's real architecture with random weights (``--tiny``: the tiny klein on a CPU, a smoke run), each under
``torch.profiler`` (``bench.profiling.gpu_profile``: wall time, kernel time by kind, the share of the wall with
no kernel running, the costliest kernels), with the FLOP count beside it:

- the project's training (``train_lora`` at the worker's recipe: rank 16, cached latents and prompt) at ``--size``
  px and ``--batch``, a few optimizer steps after one untimed;
- a 4-step distilled render of ``--render-batch`` images through ``generate_headshots``, eager.

Model FLOPs: the issue's 34.8 TFLOP per 1024 px image per transformer step, scaled by pixel count; a training step
costs three of them (forward, and a backward of twice). MFU is against the bf16 peak given by ``--peak-tflops``
(790: an H200's measured matrix rate, KINDS.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.klein_model import klein_pipelines
from bench.measure import sample_images
from bench.profiling import gpu_profile

__all__ = ["main"]

TFLOP_PER_1024_IMAGE_STEP = 34.8  # klein 4B's transformer, one 1024x1024 image, one forward (issue #17)


def _image_tflop(width: int, height: int) -> float:
    return TFLOP_PER_1024_IMAGE_STEP * width * height / (1024 * 1024)


def profile_training(pipe: Any, *, size: int, batch: int, steps: int, peak_tflops: float) -> dict[str, Any]:
    """The worker's ``train_lora``, one optimizer step untimed, then ``steps`` under the profiler."""
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import train_lora

    images = sample_images(8)
    device = str(pipe.transformer.device)

    def train(optimizer_steps: int) -> None:
        config = TrainingConfig(rank=16, steps=optimizer_steps * batch, batch_size=batch, resolution=size)
        with tempfile.TemporaryDirectory() as folder:
            train_lora(pipe, images, config, Path(folder))

    train(1)  # first-use costs (kernels chosen, memory pools grown) stay out of the profile
    result = gpu_profile(device, lambda: train(steps), label=f"train_lora {steps} steps x {batch} at {size} px")
    tflop = 3 * _image_tflop(size, size) * batch * steps
    result["model_tflop"] = round(tflop, 1)
    result["mfu_of_wall"] = round(tflop / result["wall_s"] / peak_tflops, 3) if result["wall_s"] else None
    result["mfu_of_kernels"] = round(tflop / result["gpu_busy_s"] / peak_tflops, 3) if result["gpu_busy_s"] else None
    return result


def profile_render(pipe: Any, *, batch: int, peak_tflops: float) -> dict[str, Any]:
    """A 4-step distilled request of ``batch`` images through ``generate_headshots``, eager, after one untimed."""
    from pipeline.diffusion.generation import generate_headshots, headshot_size
    from pipeline.styles import STYLES

    style = STYLES["linkedin"]
    device = str(pipe.transformer.device)

    def render() -> None:
        generate_headshots(pipe, style, count=batch, seed=0, batch_size=batch)

    render()
    result = gpu_profile(device, render, label=f"generate_headshots, 4 steps, batch {batch}, eager")
    width, height = headshot_size(pipe, style.aspect)
    tflop = _image_tflop(width, height) * batch * 4
    result["model_tflop"] = round(tflop, 1)
    result["mfu_of_wall"] = round(tflop / result["wall_s"] / peak_tflops, 3) if result["wall_s"] else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="the tiny klein model on a CPU: checks the code path")
    parser.add_argument("--size", type=int, help="training resolution (default 1024; tiny 32)")
    parser.add_argument("--batch", type=int, default=4, help="training batch (the worker's plan at 1024 px)")
    parser.add_argument("--steps", type=int, default=4, help="profiled optimizer steps")
    parser.add_argument("--render-batch", type=int, default=4)
    parser.add_argument("--peak-tflops", type=float, default=790.0)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "headshot-models")
    args = parser.parse_args(argv)

    device = "cpu" if args.tiny else "cuda"
    pipe, _ = klein_pipelines(tiny=args.tiny, device=device, cache_dir=args.cache_dir)
    size = args.size or (32 if args.tiny else 1024)
    results = {
        "train": profile_training(pipe, size=size, batch=args.batch, steps=args.steps, peak_tflops=args.peak_tflops),
        "render": profile_render(pipe, batch=args.render_batch, peak_tflops=args.peak_tflops),
    }
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
