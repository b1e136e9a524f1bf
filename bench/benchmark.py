"""``python -m bench.benchmark``: what a customer costs in GPU-seconds, the project's code vs the naive recipe.

One run, side by side, on the real SDXL architecture with random weights (``--model sdxl``; compute does not depend
on weight values) or on the tiny model (``--model tiny``, a smoke run on a CPU):

- training image-steps/s at the model's resolution, rank 16: ``pipeline.diffusion.training.loop`` vs the common
  reference loop (VAE and both text encoders every step, batch 1, eager, unfused AdamW);
- generation seconds per image, 30 steps with CFG: ``pipeline.diffusion.generation`` on an optimised pipeline with a
  LoRA slot vs a plain ``StableDiffusionXLPipeline`` in bf16 eager, at batch 1 and 4;
- LoRA switch time between two users on the warm pipeline, and whether anything recompiled;
- peak GPU memory of each, and GPU-seconds per customer (1000 image-steps + 40 headshots).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from bench.compile_mode import COMPILE_MODES, compile_mode
from bench.measure import benchmark_pipeline, graph_count, measured, sample_images
from bench.reference import naive_training_rate, plain_generation
from pipeline.diffusion.acceleration import COMPILE_SCOPES

__all__ = ["main", "project_generation", "project_training", "run_benchmark"]

CUSTOMER_IMAGE_STEPS = 1000
CUSTOMER_HEADSHOTS = 40


def project_training(pipe: Any, images: list[Image.Image], *, image_steps: int, rank: int) -> dict[str, Any]:
    """``pipeline.training.train_lora`` with the worker's memory plan: steady rate from its reports, total time."""

    from pipeline.diffusion.loading import gpu_memory_gib
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import TrainingProgress, train_lora
    from pipeline.diffusion.training.memory_plan import memory_plan

    device = pipe.unet.device
    plan = memory_plan(gpu_memory_gib(device))
    reports: list[TrainingProgress] = []
    config = TrainingConfig(
        rank=rank, steps=image_steps, batch_size=plan.batch_size, gradient_checkpointing=plan.gradient_checkpointing
    )
    with tempfile.TemporaryDirectory() as folder, measured(str(pipe.unet.device)) as total:
        result = train_lora(pipe, images, config, Path(folder), on_progress=reports.append, progress_every=1)
        lora_bytes = (result.lora_path).read_bytes()
    # Skip the first third (compilation, allocator warm-up): the rest is what every further step costs.
    steady = reports[len(reports) // 3 :]
    rate = (steady[-1].step - steady[0].step) / max(1e-9, steady[-1].elapsed_s - steady[0].elapsed_s)
    return {
        "image_steps_per_s": rate,
        "total_s": total.seconds,
        "peak_gib": total.peak_gib,
        "image_steps": image_steps,
        "batch_size": plan.batch_size,
        "lora_bytes": lora_bytes,
    }


def project_generation(pipe: Any, slot: Any, lora: Path, *, batch: int, steps: int, repeats: int) -> dict[str, Any]:
    from pipeline.diffusion.generation import generate_headshots
    from pipeline.styles import STYLES

    def render() -> None:
        generate_headshots(
            pipe, STYLES["linkedin"], count=batch, seed=1, lora_path=lora, batch_size=batch, steps=steps, lora_slot=slot
        )

    with measured(str(pipe.unet.device)) as timing:
        for _ in range(max(1, repeats)):
            render()
    return {"s_per_image": timing.seconds / (max(1, repeats) * batch), "peak_gib": timing.peak_gib}


def run_benchmark(
    pipe_factory: Callable[[], Any],
    *,
    quick: bool,
    compile: bool,
    log: Callable[[str], None] = print,
    partial: Path | None = None,
    float8: bool | None = None,
    compile_scope: str = "blocks",
) -> dict[str, Any]:
    """Every measurement of the module docstring, in the order a worker meets them, on one pipeline.

    ``compile``: render as a worker with compiling on (``optimize_for_inference``), or off (the pipeline as loaded).
    ``compile_scope`` is what compiling compiles (``pipeline.diffusion.acceleration.COMPILE_SCOPES``); the default,
    "blocks", is a GPU worker's (``jobs.settings``). ``float8`` renders the UNet's transformer layers in FP8, calibrated
    on the styles, as ``HEADSHOT_RENDER_FLOAT8`` does; None (the default, as on a worker): when compiling on a GPU
    with FP8 tensor cores.

    With ``partial``, the figures so far are rewritten there after each one, so a run cut short still reports.
    """
    import torch

    from pipeline.diffusion.acceleration import optimize_for_inference
    from pipeline.diffusion.float8 import fp8_tensor_cores, use_float8_linears
    from pipeline.diffusion.generation import headshot_size
    from pipeline.diffusion.lora_slot import LoraSlot
    from pipeline.diffusion.serving import calibrate_float8_on_looks
    from pipeline.styles import STYLES

    rank, steps, repeats = 16, (4 if quick else 30), (1 if quick else 2)
    images = sample_images(8)
    pipe = pipe_factory()
    device = str(pipe.unet.device)
    if float8 is None:
        float8 = compile and fp8_tensor_cores(pipe.unet.device)
    width, height = headshot_size(pipe, STYLES["linkedin"].aspect)
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor(),
        "torch": torch.__version__,
        "resolution": pipe.unet.config.sample_size * pipe.vae_scale_factor,
        "render_size": f"{width}x{height}",
        "inference_steps": steps,
        "rank": rank,
        "compile_scope": compile_scope if compile else None,
        "float8": float8,
    }

    def record(key: str, figures: dict[str, Any]) -> None:
        out[key] = figures
        log(f"  {key}: {figures}")
        if partial is not None:
            partial.write_text(json.dumps(out, indent=2, default=str) + "\n")

    # 1. Training: the reference loop, then ours for a whole customer (1000 image-steps).
    log("training: naive reference loop")
    record(
        "train_naive", naive_training_rate(pipe, images, steps=3 if quick else 12, warmup=1 if quick else 3, rank=rank)
    )
    log("training: project loop, user a")
    loras: dict[str, bytes] = {}
    user_a = project_training(pipe, images, image_steps=8 if quick else CUSTOMER_IMAGE_STEPS, rank=rank)
    loras["a"] = user_a.pop("lora_bytes")
    record("train_project_a", user_a)

    # 2. Generation: the plain eager pipeline, then the worker's set-up (LoRA slot, FP8 layers if asked, compile).
    for batch in (1, 4):
        log(f"generation: plain pipeline, batch {batch}")
        plain = plain_generation(pipe, batch=batch, steps=steps, width=width, height=height, repeats=repeats)
        record(f"generate_plain_b{batch}", plain)
    slot = LoraSlot(pipe, max_rank=rank)  # as the worker renders
    with measured(device) as setup:
        if float8:
            use_float8_linears(pipe.unet, scaling="static")
            calibrate_float8_on_looks(pipe, STYLES.values())
        if compile:
            optimize_for_inference(pipe, compile_scope=compile_scope)
    with tempfile.TemporaryDirectory() as folder:
        paths = {"a": Path(folder) / "a.safetensors", "b": Path(folder) / "b.safetensors"}
        paths["a"].write_bytes(loras["a"])

        def project_render(batch: int) -> None:
            log(f"generation: project, batch {batch} (the first call compiles)")
            with measured(device) as first_call:
                project_generation(pipe, slot, paths["a"], batch=batch, steps=steps, repeats=0)
            figures = project_generation(pipe, slot, paths["a"], batch=batch, steps=steps, repeats=repeats)
            record(f"generate_project_b{batch}", {**figures, "first_call_s": first_call.seconds})

        project_render(1)
        out["optimize_s"] = setup.seconds

        # 3. A second customer trains on the same, now compiled, worker; then users switch back and forth.
        graphs_before = graph_count()
        log("training: project loop, user b, on the compiled worker")
        user_b = project_training(pipe, images, image_steps=8 if quick else 200, rank=rank)
        paths["b"].write_bytes(user_b.pop("lora_bytes"))
        # Scope "blocks": the compiled blocks get their graphs with gradients on here (a worker does it at start).
        user_b["graphs_compiled"] = graph_count() - graphs_before
        record("train_project_b_after_compile", user_b)
        graphs_before = graph_count()
        switches = [slot.swap_in(paths[user]) for user in ("a", "b", "a", "b")]
        after_switch = project_generation(pipe, slot, paths["b"], batch=1, steps=steps, repeats=1)
        record(
            "lora_switch",
            {
                "seconds": sorted(switches)[len(switches) // 2],
                "all_seconds": switches,
                "recompiled_graphs": graph_count() - graphs_before,
                "s_per_image_after": after_switch["s_per_image"],
            },
        )
        project_render(4)

    # 4. One customer: a 1000 image-step training plus 40 headshots at batch 4, plus a LoRA switch.
    naive_train_s = CUSTOMER_IMAGE_STEPS / out["train_naive"]["image_steps_per_s"]
    out["gpu_s_per_customer"] = {
        "naive": naive_train_s + CUSTOMER_HEADSHOTS * out["generate_plain_b4"]["s_per_image"],
        # Measured end to end: the whole training call (encoding included) as one customer's job runs it.
        "project": out["train_project_a"]["total_s"]
        + CUSTOMER_HEADSHOTS * out["generate_project_b4"]["s_per_image"]
        + out["lora_switch"]["seconds"],
    }
    log(f"  gpu_s_per_customer: {out['gpu_s_per_customer']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    parser.add_argument("--quick", action="store_true", help="a few steps only: checks the code path, not speed")
    parser.add_argument("--no-compile", action="store_true", help="measure without torch.compile")
    parser.add_argument(
        "--compile-mode", choices=COMPILE_MODES, default="default", help="torch.compile mode (default: the worker's)"
    )
    parser.add_argument(
        "--float8",
        choices=("auto", "on", "off"),
        default="auto",
        help="FP8 rendering (default auto, as on a worker: when compiling on a GPU with FP8 tensor cores)",
    )
    parser.add_argument(
        "--compile-scope",
        choices=COMPILE_SCOPES,
        default="blocks",
        help="its transformer blocks (a GPU worker's default), or the whole UNet",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    from pipeline.diffusion.loading import pick_device

    device = args.device or pick_device()

    def factory() -> Any:
        return benchmark_pipeline(args.model, device)

    partial = args.out.with_suffix(".partial.json") if args.out else None
    float8 = {"auto": None, "on": True, "off": False}[args.float8]
    with compile_mode(args.compile_mode):
        results = run_benchmark(
            factory,
            quick=args.quick,
            compile=not args.no_compile,
            partial=partial,
            float8=float8,
            compile_scope=args.compile_scope,
        )
    compiled = not args.no_compile
    results.update(
        {
            "model": args.model,
            "date": time.strftime("%Y-%m-%d"),
            "compile": compiled,
            "compile_mode": args.compile_mode if compiled else None,
        }
    )
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
