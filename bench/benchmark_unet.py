"""``python -m bench.benchmark_unet``: one UNet call, variant against variant, and where its GPU time goes.

The UNet is the cost of a headshot (the VAE decode is a small share of it, BENCHMARKS.md), so this times one call at
the batch of a 4-image request with CFG (8 latents at the linkedin style's size), in one process: bf16 eager (the
baseline), bf16 with its transformer blocks compiled (diffusers' regional compilation, as a GPU worker compiles by
default), and with ``--full-compile`` the whole UNet compiled (``HEADSHOT_COMPILE_SCOPE=unet``); FP8's variants are
``bench.benchmark_float8``'s. ``--profile`` then records 3 calls of each compiled variant with ``torch.profiler`` and
sums their kernels' device time by kind (matrix products, attention, convolutions, norms, the rest).
``--worker-only`` times just bf16 eager and the worker's compile; ``--compile-modes`` times the ways a worker
could compile the UNet for rendering (the whole UNet with static shapes, CUDA graphs or dynamic shapes; its
transformer blocks; those and the glue around them), each from a cold start, with the compile a second shape costs;
``--flops-only`` counts one call's FLOPs by operator instead, on any machine. On a GPU each variant has a worker's
layout for its scope (``use_channels_last``): NCHW with its blocks compiled, channels-last wholly compiled;
``--compile-modes`` runs channels-last but for the modes named "-nchw".
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import benchmark_pipeline, list_recorder, measured
from bench.profiling import kernel_summary, kernel_times

__all__ = [
    "COMPILE_MODES",
    "float8_error",
    "kernel_profile",
    "main",
    "unet_call_inputs",
    "unet_call_seconds",
    "unet_flops",
    "unet_variants",
]

# ``--compile-modes``' names, in the order they run.
COMPILE_MODES = (
    "static",
    "cudagraphs",
    "dynamic",
    "blocks",
    "blocks-nchw",
    "regions",
    "regions-static",
    "regions-nchw",
)


def unet_call_inputs(pipe: Any, *, batch: int, aspect: tuple[int, int] | None = None) -> dict[str, Any]:
    """One denoising call's inputs at the linkedin style's size (or ``aspect``'s): random latents and embeddings,
    SDXL's size ids."""
    import torch

    from pipeline.diffusion.generation import headshot_size
    from pipeline.styles import STYLES

    width, height = headshot_size(pipe, aspect or STYLES["linkedin"].aspect)
    factor, config, device = pipe.vae_scale_factor, pipe.unet.config, pipe.unet.device
    generator = torch.Generator(device).manual_seed(0)

    def noise(*shape: int) -> Any:
        return torch.randn(*shape, generator=generator, device=device, dtype=pipe.unet.dtype)

    return {
        "sample": noise(batch, config.in_channels, height // factor, width // factor),
        "timestep": torch.tensor(500, device=device),
        "encoder_hidden_states": noise(batch, 77, config.cross_attention_dim),
        "added_cond_kwargs": {
            "text_embeds": noise(batch, pipe.text_encoder_2.config.projection_dim),
            "time_ids": torch.tensor([[height, width, 0, 0, height, width]] * batch, device=device).to(pipe.unet.dtype),
        },
    }


def unet_flops(pipe: Any, *, batch: int = 8) -> dict[str, Any]:
    """FLOPs of one UNet call at the linkedin style's size, by operator, counted on a weightless (meta) copy.

    Shapes alone decide the count, so it takes no GPU and no time; set against the profile's time by kind it gives
    the rate each kind of kernel reaches.
    """
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(pipe.unet.config).to(pipe.unet.dtype)
    inputs = unet_call_inputs(pipe, batch=batch)

    def on_meta(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: on_meta(item) for key, item in value.items()}
        return torch.empty_like(value, device="meta")

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(**on_meta(inputs))
    total = counter.get_total_flops()
    by_operator = sorted(counter.get_flop_counts()["Global"].items(), key=lambda item: -item[1])
    return {
        "variant": f"FLOPs of one UNet call, batch {batch}",
        "gflop_per_call": round(total / 1e9, 1),
        "gflop_by_operator": {str(op).removeprefix("aten."): round(flops / 1e9, 1) for op, flops in by_operator},
    }


def float8_error(pipe: Any) -> dict[str, Any]:
    """Convert the UNet's transformer linears to FP8 (dynamic scales) and compare one eager UNet call with the bf16
    one it replaces.

    On random weights this checks the arithmetic (no layer broken, error at FP8's rounding), not image quality.
    """
    import torch

    from pipeline.diffusion.float8 import use_float8_linears

    inputs = unet_call_inputs(pipe, batch=2)
    with torch.no_grad():
        reference = pipe.unet(**inputs).sample.double()
        converted = use_float8_linears(pipe.unet)
        fast = pipe.unet(**inputs).sample.double()
    error = float((fast - reference).norm() / reference.norm())
    return {"variant": "FP8 UNet call vs bf16, eager", "layers": converted, "relative_error": round(error, 4)}


def unet_call_seconds(pipe: Any, inputs: dict[str, Any], *, label: str, repeats: int = 10) -> dict[str, Any]:
    """One UNet call (the batch of a 4-image request with CFG): the first call (it compiles) and the median after."""
    import torch

    device = str(pipe.unet.device)
    with torch.no_grad():
        with measured(device) as first:
            pipe.unet(**inputs)
        seconds = []
        for _ in range(repeats):
            with measured(device) as call:
                pipe.unet(**inputs)
            seconds.append(call.seconds)
    median = sorted(seconds)[len(seconds) // 2]
    return {
        "variant": label,
        "first_call_s": round(first.seconds, 1),
        "call_s": round(median, 4),
        # 30 denoising steps of a 4-image request, per image: what the UNet costs one headshot.
        "unet_s_per_image_30_steps": round(median * 30 / 4, 3),
        "peak_gib": round(first.peak_gib, 1),
    }


def kernel_profile(pipe: Any, inputs: dict[str, Any], *, label: str, calls: int = 3) -> dict[str, Any]:
    """Device time of ``calls`` UNet calls by kernel kind, as shares, and the 12 costliest kernels, overall and of each
    kind (CPU op time on a CPU)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    on_cuda = pipe.unet.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with torch.no_grad(), profile(activities=activities) as profiler:
        for _ in range(calls):
            pipe.unet(**inputs)
        if on_cuda:
            torch.cuda.synchronize()
    times = kernel_times(profiler, on_cuda=on_cuda)
    total = sum(times.values()) or 1.0
    return {
        "variant": f"profile: {label}",
        "clock": "GPU kernels" if on_cuda else "CPU ops (self time)",
        "ms_per_call": round(total / calls / 1000, 2),
        **kernel_summary(times, unit="share", scale=1 / total, costliest=12),
    }


def unet_variants(
    pipe: Any, *, record: Callable[[dict[str, Any]], None], full_compile: bool, profile: bool, worker_only: bool = False
) -> None:
    """The bf16 variants of the module docstring on ``pipe``, in order (FP8's are ``bench.benchmark_float8``'s).
    ``worker_only``: bf16 eager, then the transformer blocks compiled as a GPU worker compiles them."""

    from pipeline.diffusion.acceleration import compile_unet_blocks, use_channels_last

    inputs = unet_call_inputs(pipe, batch=8)
    base = str(pipe.unet.dtype).removeprefix("torch.")

    record(unet_call_seconds(pipe, inputs, label=f"{base}, eager"))
    # A GPU worker's default (jobs.settings), profiled too: where its time goes is what the next change must cut.
    label = f"{base}, transformer blocks compiled (as a GPU worker compiles)"
    compile_unet_blocks(pipe.unet)
    record(unet_call_seconds(pipe, inputs, label=label))
    if profile:
        record(kernel_profile(pipe, inputs, label=label))
    if worker_only or not full_compile:
        return
    _uncompile(pipe)
    use_channels_last(pipe)
    pipe.unet.compile()  # as HEADSHOT_COMPILE_SCOPE=unet compiles
    label = f"{base}, whole UNet compiled"
    record(unet_call_seconds(pipe, inputs, label=label))
    if profile:
        record(kernel_profile(pipe, inputs, label=label))


def _uncompile(pipe: Any) -> None:
    """Every compiled module of the UNet back to eager, and dynamo's caches emptied: the next compile starts cold."""
    import torch._dynamo

    from pipeline.diffusion.acceleration import TRANSFORMER_GLUE

    for module in pipe.unet.modules():
        module._compiled_call_impl = None
        module.__dict__.pop("forward", None)  # compile_group_norms' per-instance forwards
        for name in TRANSFORMER_GLUE:
            module.__dict__.pop(name, None)  # compile_unet_regions' per-instance compiled methods
    torch._dynamo.reset()


def _compile_as(pipe: Any, mode: str) -> None:
    """Compile the UNet for ``--compile-modes``' ``mode`` (a name of ``COMPILE_MODES``)."""
    from pipeline.diffusion.acceleration import compile_unet_blocks, compile_unet_regions

    if mode in ("blocks", "blocks-nchw"):
        compile_unet_blocks(pipe.unet)
    elif mode in ("regions", "regions-static", "regions-nchw"):
        compile_unet_regions(pipe.unet, dynamic=mode != "regions-static")
    elif mode == "cudagraphs":
        pipe.unet.compile(fullgraph=True, dynamic=False, mode="reduce-overhead")
    else:
        pipe.unet.compile(fullgraph=True, dynamic=mode == "dynamic")


def compile_modes(
    pipe: Any,
    *,
    record: Callable[[dict[str, Any]], None],
    only: tuple[str, ...] = COMPILE_MODES,
    profile: bool = False,
) -> None:
    """The UNet (in its dtype: bf16 on SDXL) compiled for rendering each way named, every one from scratch (dynamo
    reset; inductor's on-disk cache is whatever the machine has, so run it on a fresh one). The whole UNet: static
    shapes with fullgraph (one graph per shape), the same captured in CUDA graphs ('reduce-overhead', launch gaps
    gone), dynamic shapes (one graph for every size). Regionally: the transformer blocks (a GPU worker's default),
    "regions" (the blocks and the eager glue around them, the glue with dynamic shapes), "regions-static", and
    "regions-nchw" (as "regions", its weights and inputs in PyTorch's default NCHW layout instead of a GPU worker's
    channels-last: inductor's group norms over channels-last activations are the call's costliest memory-bound work).
    Except for the whole UNet's static graphs (a second shape compiles as long as the first: 150 s against 154 s,
    BENCHMARKS.md 2026-12-02), the first call at a second shape (the square style's) says what each further shape a
    worker warms costs at start. Eager first, as the same run's baseline; each mode's output is set against
    eager's (relative error of one call). ``profile``: each mode's kernels by kind too."""
    import torch

    inputs = unet_call_inputs(pipe, batch=8)
    square = unet_call_inputs(pipe, batch=8, aspect=(1, 1))
    dtype = str(pipe.unet.dtype).removeprefix("torch.")
    labels = {
        "static": "whole UNet, static shapes, fullgraph",
        "cudagraphs": "whole UNet, static shapes, CUDA graphs",
        "dynamic": "whole UNet, dynamic shapes",
        "blocks": "transformer blocks, channels-last",
        "blocks-nchw": "transformer blocks, NCHW layout (a GPU worker's default)",
        "regions": "transformer blocks static, the glue around them dynamic",
        "regions-static": "transformer blocks and the glue around them, static shapes",
        "regions-nchw": "transformer blocks static, the glue around them dynamic, NCHW layout",
    }

    def output() -> Any:
        with torch.no_grad():
            return pipe.unet(**inputs).sample.double()

    record(unet_call_seconds(pipe, inputs, label=f"{dtype}, eager"))
    reference = output()
    layout = next(pipe.unet.parameters()).is_contiguous(memory_format=torch.channels_last)
    for mode in only:
        _uncompile(pipe)
        nchw = mode.endswith("-nchw")
        pipe.unet.to(memory_format=torch.contiguous_format if nchw else _layout(layout))
        _compile_as(pipe, mode)
        figures = unet_call_seconds(pipe, inputs, label=f"{dtype}, {labels[mode]}")
        # The same call's output against eager's: a compile must change only the rounding.
        figures["relative_error_vs_eager"] = round(float((output() - reference).norm() / reference.norm()), 5)
        if mode not in ("static", "cudagraphs"):
            with torch.no_grad(), measured(str(pipe.unet.device)) as other:
                pipe.unet(**square)
            figures["second_shape_first_call_s"] = round(other.seconds, 1)
            figures["second_shape_call_s"] = unet_call_seconds(pipe, square, label="", repeats=5)["call_s"]
        record(figures)
        if profile:
            record(kernel_profile(pipe, inputs, label=labels[mode]))
    _uncompile(pipe)
    pipe.unet.to(memory_format=_layout(layout))


def _layout(channels_last: bool) -> Any:
    import torch

    return torch.channels_last if channels_last else torch.contiguous_format


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_unet", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--full-compile", action="store_true", help="add the whole UNet compiled")
    parser.add_argument("--profile", action="store_true", help="profile the last variant's kernels")
    parser.add_argument("--flops-only", action="store_true", help="only count one call's FLOPs by operator (no timing)")
    parser.add_argument(
        "--worker-only",
        action="store_true",
        help="only bf16 eager and bf16 as a GPU worker compiles it (then profiled)",
    )
    parser.add_argument(
        "--compile-modes",
        nargs="?",
        const=",".join(COMPILE_MODES),
        help=f"only eager and the UNet compiled each way named (default: {','.join(COMPILE_MODES)}), cold",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here (rewritten after each figure)")
    args = parser.parse_args(argv)

    from pipeline.diffusion.acceleration import use_channels_last
    from pipeline.diffusion.loading import pick_device

    pipe = benchmark_pipeline(args.model, pick_device())
    use_channels_last(pipe, unet=bool(args.compile_modes))  # on a GPU, as a worker renders
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "model": args.model, "unet": []}

    record = list_recorder(results, "unet", args.out)

    if args.flops_only:
        record(unet_flops(pipe))
        return 0
    if args.compile_modes:
        names = tuple(args.compile_modes.split(","))
        unknown = sorted(set(names) - set(COMPILE_MODES))
        if unknown:
            parser.error(f"--compile-modes names {', '.join(unknown)}; pick from {', '.join(COMPILE_MODES)}")
        compile_modes(pipe, record=record, only=names, profile=args.profile)
        return 0
    unet_variants(
        pipe, record=record, full_compile=args.full_compile, profile=args.profile, worker_only=args.worker_only
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
