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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.diffusion.acceleration import COMPILE_SCOPES

__all__ = ["benchmark_pipeline", "main", "naive_training_rate", "run_benchmark"]

PROMPT = "a photo of sks person"
CUSTOMER_IMAGE_STEPS = 1000
CUSTOMER_HEADSHOTS = 40


@dataclass
class Measure:
    seconds: float = 0.0
    peak_gib: float = 0.0


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def measured(device: str) -> Iterator[Measure]:
    """Wall time with the device synchronised at both ends, and the peak memory allocated inside."""
    import torch

    result = Measure()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    yield result
    if cuda:
        torch.cuda.synchronize()
        result.peak_gib = torch.cuda.max_memory_allocated() / 2**30
    result.seconds = time.perf_counter() - started


def sample_images(count: int) -> list[Image.Image]:
    """Crops of scikit-image's astronaut photo when it is installed (content does not change the cost)."""
    try:
        from skimage import data

        photo = Image.fromarray(data.astronaut())
    except ImportError:
        photo = Image.new("RGB", (512, 512), "grey")
    return [photo.crop((10 * i, 5 * i, 10 * i + 400, 5 * i + 400)) for i in range(count)]


def naive_training_rate(pipe: Any, images: list[Image.Image], *, steps: int, warmup: int, rank: int) -> dict[str, Any]:
    """The reference DreamBooth-LoRA loop: VAE (fp32) and text encoders every step, batch 1, eager, unfused AdamW."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    from pipeline.diffusion.adapters import UNET_ATTENTION_TARGETS, new_adapter_name, remove_adapter

    device, unet, vae = pipe.unet.device, pipe.unet, pipe.vae
    resolution = unet.config.sample_size * pipe.vae_scale_factor
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    adapter = new_adapter_name("naive")
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=[*UNET_ATTENTION_TARGETS]),
        adapter_name=adapter,
    )
    params = [param for name, param in unet.named_parameters() if f".{adapter}." in name]
    for param in params:
        param.data = param.data.float()
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    vae_dtype = vae.dtype
    vae.to(torch.float32)  # the reference script keeps SDXL's VAE in fp32
    pixels = [
        torch.from_numpy(
            np.asarray(image.convert("RGB").resize((resolution, resolution)), dtype=np.float32) / 127.5 - 1
        )
        .permute(2, 0, 1)
        .unsqueeze(0)
        for image in images
    ]
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=device)
    unet.train()
    timed_from = 0.0
    try:
        with measured(str(device)) as total:
            for step in range(warmup + steps):
                if step == warmup:
                    _synchronize(str(device))
                    timed_from = time.perf_counter()
                with torch.no_grad():
                    latents = vae.encode(pixels[step % len(pixels)].to(device)).latent_dist.sample()
                    latents = (latents * vae.config.scaling_factor).to(unet.dtype)
                    prompt_embeds, _, pooled, _ = pipe.encode_prompt(
                        PROMPT, device=device, do_classifier_free_guidance=False
                    )
                noise = torch.randn_like(latents)
                timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (1,), device=device)
                noisy = scheduler.add_noise(latents, noise, timesteps)
                conditions = {"text_embeds": pooled, "time_ids": time_ids.to(prompt_embeds.dtype)}
                with torch.autocast(device.type, dtype=unet.dtype, enabled=device.type == "cuda"):
                    prediction = unet(noisy, timesteps, prompt_embeds, added_cond_kwargs=conditions).sample
                loss = F.mse_loss(prediction.float(), noise.float())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            _synchronize(str(device))
            timed_s = time.perf_counter() - timed_from
    finally:
        remove_adapter(pipe, adapter)
        unet.eval()
        unet.requires_grad_(False)
        vae.to(vae_dtype)
    return {"image_steps_per_s": steps / timed_s, "peak_gib": total.peak_gib}


def project_training(pipe: Any, images: list[Image.Image], *, image_steps: int, rank: int) -> dict[str, Any]:
    """``pipeline.training.train_lora`` with the worker's memory plan: steady rate from its reports, total time."""
    import torch

    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import TrainingProgress, memory_plan, train_lora

    device = pipe.unet.device
    memory = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else None
    plan = memory_plan(memory)
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


def plain_generation(pipe: Any, *, batch: int, steps: int, width: int, height: int, repeats: int) -> dict[str, Any]:
    """A plain ``StableDiffusionXLPipeline`` call, as the diffusers docs show it: seconds per image after a warm-up."""
    import torch

    def render() -> None:
        pipe(
            prompt=[PROMPT] * batch,
            negative_prompt=["blurry"] * batch,
            num_inference_steps=steps,
            guidance_scale=6.0,
            width=width,
            height=height,
            generator=torch.Generator("cpu").manual_seed(0),
        )

    render()
    with measured(str(pipe.unet.device)) as timing:
        for _ in range(repeats):
            render()
    return {"s_per_image": timing.seconds / (repeats * batch), "peak_gib": timing.peak_gib}


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


def _graph_count() -> int:
    import torch._dynamo.utils

    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def run_benchmark(
    pipe_factory: Callable[[], Any],
    *,
    quick: bool,
    compile: bool,
    compile_mode: str | None = None,
    log: Callable[[str], None] = print,
    partial: Path | None = None,
    float8: bool | None = None,
    compile_scope: str = "unet",
) -> dict[str, Any]:
    """Every measurement of the module docstring, in the order a worker meets them, on one pipeline.

    ``float8`` renders the project's UNet transformer layers in FP8; default (None): when compiling on a GPU with
    FP8 tensor cores. ``compile_scope`` is what compiling compiles (``pipeline.acceleration.COMPILE_SCOPES``).

    With ``partial``, the figures so far are rewritten there after each one, so a run cut short still reports.
    """
    import torch

    from pipeline.diffusion.acceleration import SERVING_COMPILE_MODE, optimize_for_inference
    from pipeline.diffusion.float8 import float8_supported
    from pipeline.diffusion.generation import headshot_size
    from pipeline.diffusion.lora_slot import LoraSlot
    from pipeline.styles import STYLES

    rank, steps, repeats = 16, (4 if quick else 30), (1 if quick else 2)
    images = sample_images(8)
    pipe = pipe_factory()
    device = str(pipe.unet.device)
    if float8 is None:
        float8 = compile and float8_supported(pipe.unet.device)
    width, height = headshot_size(pipe, STYLES["linkedin"].aspect)
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor(),
        "torch": torch.__version__,
        "resolution": pipe.unet.config.sample_size * pipe.vae_scale_factor,
        "render_size": f"{width}x{height}",
        "inference_steps": steps,
        "rank": rank,
        "compile_mode": (compile_mode or SERVING_COMPILE_MODE) if compile else None,
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

    # 2. Generation: the plain eager pipeline, then the worker's set-up (LoRA slot, then optimise and compile).
    for batch in (1, 4):
        log(f"generation: plain pipeline, batch {batch}")
        plain = plain_generation(pipe, batch=batch, steps=steps, width=width, height=height, repeats=repeats)
        record(f"generate_plain_b{batch}", plain)
    slot = LoraSlot(pipe, max_rank=rank, merge=True)  # as the worker renders
    with measured(device) as setup:
        optimize_for_inference(
            pipe,
            compile=compile,
            compile_mode=compile_mode or SERVING_COMPILE_MODE,
            float8=float8,
            compile_scope=compile_scope,
        )
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
        graphs_before = _graph_count()
        log("training: project loop, user b, on the compiled worker")
        user_b = project_training(pipe, images, image_steps=8 if quick else 200, rank=rank)
        paths["b"].write_bytes(user_b.pop("lora_bytes"))
        # Scope "blocks": the compiled blocks get their graphs with gradients on here (a worker does it at start).
        user_b["graphs_compiled"] = _graph_count() - graphs_before
        record("train_project_b_after_compile", user_b)
        graphs_before = _graph_count()
        switches = [slot.swap_in(paths[user]) for user in ("a", "b", "a", "b")]
        after_switch = project_generation(pipe, slot, paths["b"], batch=1, steps=steps, repeats=1)
        record("lora_switch", {
            "seconds": sorted(switches)[len(switches) // 2],
            "all_seconds": switches,
            "recompiled_graphs": _graph_count() - graphs_before,
            "s_per_image_after": after_switch["s_per_image"],
        })  # fmt: skip
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


def benchmark_pipeline(model: str, device: str) -> Any:
    """What the benchmarks measure: ``"sdxl"``, SDXL's architecture with random weights, or ``"tiny"``."""
    if model == "tiny":
        from pipeline.diffusion.loading import load_base_pipeline

        return load_base_pipeline("tiny", device=device, cache_dir=Path(tempfile.gettempdir()) / "headshot-models")
    from pipeline.diffusion.sdxl_config import build_random_sdxl

    return build_random_sdxl(device=device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    parser.add_argument("--quick", action="store_true", help="a few steps only: checks the code path, not speed")
    parser.add_argument("--no-compile", action="store_true", help="measure without torch.compile")
    parser.add_argument("--compile-mode", help="torch.compile mode (default: the worker's, SERVING_COMPILE_MODE)")
    parser.add_argument(
        "--float8",
        choices=("auto", "on", "off"),
        default="auto",
        help="FP8 rendering (auto: when compiling on a GPU with FP8 tensor cores)",
    )
    parser.add_argument(
        "--compile-scope", choices=COMPILE_SCOPES, default="unet", help="the whole UNet, or its transformer blocks"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    from pipeline.diffusion.loading import pick_device

    device = args.device or pick_device()

    def factory() -> Any:
        return benchmark_pipeline(args.model, device)

    partial = args.out.with_suffix(".partial.json") if args.out else None
    float8 = {"auto": None, "on": True, "off": False}[args.float8]
    results = run_benchmark(
        factory,
        quick=args.quick,
        compile=not args.no_compile,
        compile_mode=args.compile_mode,
        partial=partial,
        float8=float8,
        compile_scope=args.compile_scope,
    )
    results.update({"model": args.model, "date": time.strftime("%Y-%m-%d"), "compile": not args.no_compile})
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
