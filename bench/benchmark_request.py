"""``python -m bench.benchmark_request``: one ``/headshot`` request as a worker serves it by default, against a plain
compiled ``StableDiffusionXLPipeline``, in one process.

The worker side is built by the worker's own ``jobs.worker.model_setup.prepare_model`` from ``Settings()`` (the
environment's ``HEADSHOT_*`` variables apply, as on a worker; the JSON records the settings and the compile profile
they resolve to), so the benchmark runs exactly what a worker runs: its LoRA slot, FP8 where the settings and the
GPU turn it on (the JSON's ``fp8_layers``), its compile scope, its warm-up. A request is what
``jobs.worker.render_job`` does on the GPU's critical path: swap the user's LoRA into the slot and merge it, render
4 images at batch 4 with CFG, decode, clear the slot, then encode the PNGs (``jobs.worker.png``). Where the worker
replays its UNet calls from CUDA graphs (``HEADSHOT_RENDER_CUDA_GRAPHS``; unset, on a GPU of 72 GiB or more), the
same worker is also timed with the graphs bypassed, as a third side.

The baseline is the two lines a diffusers user writes: a plain pipeline of the same architecture, its UNet in
channels-last and ``torch.compile(unet, fullgraph=True)``, the same size, steps, CFG scale and batch, returning PIL
images (no LoRA, no PNG). The two are timed interleaved (A B A B ...), after a warm-up each. ``--profile`` adds each
side's GPU kernels for one request, by kind, and how much of the request's wall time the GPU was idle.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.measure import add_cudnn_autotune_switch, graph_count, key_recorder, measured, use_cudnn_autotune
from bench.profiling import gpu_profile
from jobs.worker.png import encode_pngs

__all__ = [
    "describe_settings",
    "main",
    "plain_compiled_pipeline",
    "user_lora_file",
    "worker_settings",
]

STYLE = "linkedin"


def worker_settings(model: str, data_dir: Path) -> Any:
    """``Settings()`` as a worker reads them, with only the model and the data folder named."""
    from jobs.settings import Settings

    return Settings(model=model, data_dir=data_dir)


def describe_settings(settings: Any, device: str) -> dict[str, Any]:
    """The settings that decide how a worker renders, and the compile profile they resolve to on ``device``."""
    from jobs.worker.model_setup import renders_from_graphs
    from pipeline.diffusion import acceleration
    from pipeline.diffusion.families import Family
    from pipeline.diffusion.loading import gpu_memory_gib

    profile = settings.compile_profile(device)
    keys = (
        "model",
        "dtype",
        "lora_rank",
        "compile_unet",
        "compile_training",
        "compile_scope",
        "compile_backend",
        "render_float8",
        "train_float8",
        "train_cuda_graphs",
        "render_cuda_graphs",
        "compile_render_glue",
        "render_fused_resnets",
        "compile_cache_dir",
        "compile_decoder_apart",
        "warm_aspects",
        "headshots_per_request",
        "headshot_candidates",
        "inference_steps",
    )
    return {
        "settings": {key: getattr(settings, key) for key in keys},
        "compile_profile": {
            "unet": profile.unet,
            "training": profile.training,
            "scope": profile.scope,
            # As the worker resolves it on this GPU (the benchmarks' models are SDXL's architecture).
            "cuda_graphs": renders_from_graphs(profile, Family.SDXL, gpu_memory_gib(device)),
            "render_glue": profile.render_glue,
        },
        "headshot_env": sorted(name for name in os.environ if name.startswith("HEADSHOT_")),
        "cudnn_autotune": acceleration.CUDNN_AUTOTUNE,
    }


def user_lora_file(slot: Any, folder: Path, *, rank: int, seed: int = 0, scale: float = 0.01) -> Path:
    """A random LoRA of ``rank`` on the slot's layers, saved as the worker's training saves one."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig

    from pipeline.diffusion.adapters import UNET_ATTENTION_TARGETS

    generator = torch.Generator("cpu").manual_seed(seed)
    layers: dict[str, Any] = {}
    for name, layer in slot._layers.items():
        base = layer.base_layer
        layers[f"{name}.lora_A.weight"] = torch.randn(rank, base.in_features, generator=generator) * scale
        layers[f"{name}.lora_B.weight"] = torch.randn(base.out_features, rank, generator=generator) * scale
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(UNET_ATTENTION_TARGETS))
    StableDiffusionXLPipeline.save_lora_weights(
        folder,
        unet_lora_layers={key: value.to(torch.bfloat16) for key, value in layers.items()},
        unet_lora_adapter_metadata=config.to_dict(),
        weight_name="user.safetensors",
        safe_serialization=True,
    )
    return folder / "user.safetensors"


def plain_compiled_pipeline(model: str, device: str) -> Any:
    """A fresh pipeline of the same architecture, compiled the way diffusers' docs show (no project code in the
    call path)."""
    import torch

    from bench.measure import benchmark_pipeline

    pipe = benchmark_pipeline("tiny" if model == "tiny" else "sdxl", device)
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.unet = torch.compile(pipe.unet, fullgraph=True, backend="inductor" if device.startswith("cuda") else "eager")
    return pipe


def pillow_pngs(images: list[Any]) -> list[bytes]:
    """PNG level 1 by Pillow, one thread per image: how ``jobs.worker.render_job`` encoded them until 2026-12-02."""

    def one(image: Any) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        return list(pool.map(one, images))


@contextmanager
def graphs_bypassed(unet: Any, graphs: Any) -> Iterator[None]:
    """The worker's UNet called as it was before its CUDA graphs were installed (the graphs kept for later)."""
    unet._compiled_call_impl = graphs._compiled
    try:
        yield
    finally:
        unet._compiled_call_impl = graphs


def attention_order() -> list[str]:
    """torch's order of preference for attention kernels now, by backend name (process-wide)."""
    import torch
    from torch.nn.attention import SDPBackend

    return [SDPBackend(value).name for value in torch._C._get_sdp_priority_order()]


def request_split(
    pipe: Any, slot: Any, lora: Path, style: Any, *, batch: int, steps: int, size: tuple[int, int]
) -> dict[str, float]:
    """Seconds of each stage of a worker's request, the device synchronised around each."""
    import torch

    from pipeline.diffusion.generation import generate_headshots

    device = str(pipe.unet.device)
    width, height = size
    split: dict[str, float] = {}
    with measured(device) as stage:
        slot.swap_in(lora)
    split["swap_in_and_merge_s"] = stage.seconds
    with measured(device) as stage:
        slot.clear()
    split["clear_s"] = stage.seconds
    with slot.merged_base(), measured(device) as stage:  # the merged path a request renders through
        images = generate_headshots(pipe, style, count=batch, seed=7, batch_size=batch, steps=steps, lora_slot=slot)
    split["render_without_lora_s"] = stage.seconds
    with measured(device) as stage:
        encode_pngs([generated.image for generated in images])
    split["png_s"] = stage.seconds
    with measured(device) as stage:
        pillow_pngs([generated.image for generated in images])
    split["png_pillow_threads_s"] = stage.seconds
    factor = pipe.vae_scale_factor
    latents = torch.randn(batch, 4, height // factor, width // factor, device=pipe.vae.device, dtype=pipe.vae.dtype)
    with torch.no_grad(), measured(device) as stage:
        pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)  # as the pipeline calls it
    split["vae_decode_s"] = stage.seconds
    return {key: round(value, 3) for key, value in split.items()}


def interleaved(calls: dict[str, Callable[[], Any]], *, repeats: int, device: str, images: int) -> dict[str, Any]:
    """Each call ``repeats`` times, in turn (A B A B ...), so drift of the machine hits every side alike."""
    times: dict[str, list[float]] = {side: [] for side in calls}
    for _ in range(repeats):
        for side, call in calls.items():
            with measured(device) as one:
                call()
            times[side].append(one.seconds)
    summary: dict[str, Any] = {}
    for side, seconds in times.items():
        median = statistics.median(seconds)
        summary[side] = {
            "request_s": [round(s, 3) for s in seconds],
            "median_request_s": round(median, 3),
            "s_per_image": round(median / images, 4),
        }
    if "plain" in summary:
        ratio = summary["project"]["median_request_s"] / summary["plain"]["median_request_s"]
        summary["project_over_plain"] = round(ratio, 3)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_request", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps per image")
    parser.add_argument("--repeats", type=int, default=3, help="timed requests per side, interleaved")
    parser.add_argument("--profile", action="store_true", help="add one profiled request per side")
    parser.add_argument("--skip-plain", action="store_true", help="leave out the plain compiled pipeline")
    parser.add_argument("--out", type=Path, help="write the results as JSON here (rewritten after each figure)")
    add_cudnn_autotune_switch(parser)
    args = parser.parse_args(argv)
    use_cudnn_autotune(args)
    # The worker's own start-up log (each warm-up render's seconds) on stderr, as a worker prints it.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from jobs.worker.model_setup import prepare_model
    from pipeline.diffusion.cuda_graphs import installed_graphs
    from pipeline.diffusion.generation import generate_headshots, headshot_size
    from pipeline.diffusion.loading import pick_device, weight_dtypes
    from pipeline.styles import STYLES

    device = pick_device()
    batch = 4
    scratch = Path(tempfile.mkdtemp(prefix="bench-request-"))
    settings = worker_settings("random-sdxl" if args.model == "sdxl" else "tiny", scratch)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor(),
        "torch": torch.__version__,
        "model": args.model,
        "worker": describe_settings(settings, device),
        "request": {"style": STYLE, "images": batch, "batch": batch, "steps": args.steps, "png": "level 1, strips"},
    }

    record = key_recorder(results, args.out)

    # 1. The worker, set up as a worker sets itself up (compiles and warms here).
    with measured(device) as ready:
        model = prepare_model(settings)
    # torch's order of attention kernels once CUDA is up (it puts cuDNN first on an H100/H200; BENCHMARKS.md).
    results["attention_order"] = attention_order()
    pipe, slot = model.pipe, model.lora_slot
    style = STYLES[STYLE]
    width, height = headshot_size(pipe, style.aspect)
    results["request"]["size"] = f"{width}x{height}"
    results["request"]["guidance_scale"] = style.guidance_scale
    results["request"]["scheduler"] = style.scheduler
    record("worker_ready_s", round(ready.seconds, 1))
    # What HEADSHOT_RENDER_FLOAT8 resolved to (unset, it depends on the GPU): the UNet layers that render in FP8.
    from pipeline.diffusion.float8 import Float8Linear

    record("fp8_layers", sum(isinstance(module, Float8Linear) for module in pipe.unet.modules()))
    graphs = installed_graphs(pipe.unet)
    if graphs is not None:
        record("cuda_graphs_captured", graphs.captured)
    if device.startswith("cuda"):
        record("gpu_memory_reserved_gib_when_ready", round(torch.cuda.memory_reserved() / 2**30, 2))
    lora = user_lora_file(slot, scratch, rank=settings.lora_rank)

    project_graphs = 0

    def project_request() -> None:
        nonlocal project_graphs
        before = graph_count()
        images = generate_headshots(
            pipe, style, count=batch, seed=7, lora_path=lora, batch_size=batch, steps=args.steps, lora_slot=slot
        )
        encode_pngs([generated.image for generated in images])
        project_graphs += graph_count() - before

    # 2. The baseline.
    plain = None if args.skip_plain else plain_compiled_pipeline(args.model, device)

    def plain_request() -> None:
        assert plain is not None
        plain(
            prompt=[style.render_prompt()] * batch,
            negative_prompt=[style.negative_prompt] * batch,
            num_inference_steps=args.steps,
            guidance_scale=style.guidance_scale,
            width=width,
            height=height,
            generator=torch.Generator("cpu").manual_seed(7),
        )

    with measured(device) as first:
        project_request()
    record("project_first_request_s", round(first.seconds, 2))
    # Recorded now, so a run cut short still says whether the first request compiled, and in which dtypes the
    # worker renders after its warm-up (a cast of a shared component once made it float32: BENCHMARKS.md).
    record("project_first_request_graphs_compiled", project_graphs)
    record("worker_dtypes", {name: sorted(map(str, dtypes)) for name, dtypes in weight_dtypes(pipe).items()})
    if plain is not None:
        with measured(device) as first:
            plain_request()  # compiles
        record("plain_first_request_s", round(first.seconds, 1))
    graphs_first_request = project_graphs

    def project_request_without_graphs() -> None:
        assert graphs is not None
        with graphs_bypassed(pipe.unet, graphs):
            project_request()

    # 3. Interleaved timed requests.
    sides = (
        {"project": project_request}
        | ({} if plain is None else {"plain": plain_request})
        | ({} if graphs is None else {"project_without_graphs": project_request_without_graphs})
    )
    summary = interleaved(sides, repeats=args.repeats, device=device, images=batch)
    record("timed", summary)

    # 4. Where a project request's time goes, synchronised at each stage (a little slower than unsynchronised).
    split = request_split(pipe, slot, lora, style, batch=batch, steps=args.steps, size=(width, height))
    record("project_split", split)
    # Graphs built during the worker's requests (none may be: a compile would stall a user).
    record("project_graphs_compiled", {"first_request": graphs_first_request, "all_requests": project_graphs})
    if graphs is not None:  # replays prove the requests ran through the graphs; a capture after ready would stall one
        record("cuda_graphs_after_requests", {"captured": graphs.captured, "replays": graphs.replays})

    # 5. Kernels by kind, one request each.
    if args.profile:
        record("profile_project", gpu_profile(device, project_request, label="project /headshot request"))
        if plain is not None:
            record("profile_plain", gpu_profile(device, plain_request, label="plain compiled pipeline"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
