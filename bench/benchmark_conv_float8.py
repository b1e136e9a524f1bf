"""``python -m bench.benchmark_conv_float8``: the UNet's ResNet convolutions at a request's shape, each timed as
cuDNN runs it in bf16 (what a worker runs) and through ``headshot::conv3x3_float8`` (``pipeline.diffusion.float8_conv``)
from a bf16 input (cast in a pass of its own first) and from an e4m3 one (as the norm before it writes it), and the
same kernel from e4m3 with its sums promoted to float32 after every reduction tile (``precise=True``; by default they
stay in the tensor cores' FP8 accumulator), to time what promoting them costs.

The shapes are recorded from one eager UNet call at the linkedin look's size and CFG batch, channels-last (every
distinct input, with how often a call makes it), so the figures are SDXL's convolutions as a request runs them. Each
is timed on its own (median of ``--repeats`` replays of a CUDA graph of it, as a worker replays its render calls,
after a warm-up) and weighted by its
count: milliseconds a UNet call, TFLOP/s, and each FP8 output's relative difference from the float64 convolution.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.benchmark_unet import unet_call_inputs
from bench.measure import benchmark_pipeline, describe_run, median_gpu_seconds

__all__ = ["main", "resnet_conv_shapes"]

# (in channels, out channels, height, width, batch)
ConvShape = tuple[int, int, int, int, int]


def resnet_conv_shapes(pipe: Any, *, batch: int) -> Counter[ConvShape]:
    """The distinct inputs of the ResNet blocks' 3x3 convolutions in one UNet call at ``batch``, with their counts."""
    import torch

    from pipeline.diffusion.float8_conv import FLOAT8_CONV_PARTS, convertible

    shapes: Counter[ConvShape] = Counter()
    hooks = []
    for name, module in pipe.unet.named_modules():
        if convertible(module) and any(part in f".{name}." for part in FLOAT8_CONV_PARTS):

            def record(conv: Any, args: tuple[Any, ...]) -> None:
                samples, channels, height, width = args[0].shape
                shapes[channels, conv.out_channels, height, width, samples] += 1

            hooks.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            pipe.unet(**unet_call_inputs(pipe, batch=batch))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def time_shape(shape: ConvShape, *, repeats: int) -> dict[str, Any]:
    """One convolution of ``shape`` four ways: seconds (median), TFLOP/s, and the FP8 outputs' relative difference
    from float64."""
    import torch
    from torch import nn
    from torch.nn import functional

    from pipeline.diffusion.float8_conv import Float8Conv2d
    from pipeline.diffusion.float8_conv_kernel import conv3x3_float8

    channels_in, channels_out, height, width, samples = shape
    torch.manual_seed(0)
    conv = nn.Conv2d(channels_in, channels_out, 3, padding=1, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(samples, channels_in, height, width, device="cuda", dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    conv.weight = nn.Parameter(conv.weight.detach().contiguous(memory_format=torch.channels_last))  # as the UNet's
    layer = Float8Conv2d.from_conv(conv)
    assert layer.bias is not None  # nn.Conv2d's default, as the UNet's
    layer.input_scale.copy_(x.abs().amax().float() * 1.25 / 448)
    layer.calibrated = True
    quantized = (x.float() / layer.input_scale).clamp(-448, 448).to(torch.float8_e4m3fn)
    operands = (layer.weight_fp8, layer.weight_scale, layer.input_scale, layer.bias)
    ways: dict[str, Callable[[], Any]] = {
        "cudnn_bf16": lambda: conv(x),
        "fp8_from_bf16": lambda: layer(x),
        "fp8_from_e4m3": lambda: layer.quantized(quantized, torch.bfloat16),
        "fp8_promoted": lambda: conv3x3_float8(quantized, *operands, torch.bfloat16, precise=True),
    }
    flop = 2 * 9 * channels_in * channels_out * height * width * samples
    with torch.no_grad():
        expected = functional.conv2d(x.double(), conv.weight.double(), layer.bias.double(), padding=1)
        figures: dict[str, Any] = {"shape": list(shape)}
        for name, call in ways.items():
            seconds = median_gpu_seconds(call, repeats, replayed=True)
            figures[f"{name}_ms"] = round(seconds * 1e3, 4)
            figures[f"{name}_tflops"] = round(flop / seconds / 1e12, 1)
            if name != "cudnn_bf16":
                out = call().double()
                figures[f"{name}_error"] = round(float((out - expected).norm() / expected.norm()), 5)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_conv_float8", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="UNet batch (8: a 4-image request with CFG)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: the kernels compared are GPU kernels")
    pipe = benchmark_pipeline("sdxl", "cuda")
    pipe.unet.to(memory_format=torch.channels_last)
    shapes = resnet_conv_shapes(pipe, batch=args.batch)
    del pipe
    torch.cuda.empty_cache()
    results: dict[str, Any] = {
        **describe_run("sdxl"),
        "timing": "CUDA graph replays",
        "cudnn": torch.backends.cudnn.version(),
        "batch": args.batch,
        "shapes": [],
    }
    totals: Counter[str] = Counter()
    for shape, count in sorted(shapes.items()):
        figures = {**time_shape(shape, repeats=args.repeats), "count": count}
        results["shapes"].append(figures)
        for way in ("cudnn_bf16", "fp8_from_bf16", "fp8_from_e4m3", "fp8_promoted"):
            totals[way] += figures[f"{way}_ms"] * count
        print("conv", json.dumps(figures), flush=True)
    results["ms_per_unet_call"] = {way: round(ms, 3) for way, ms in totals.items()}
    print("convs a UNet call (ms)", json.dumps(results["ms_per_unet_call"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
