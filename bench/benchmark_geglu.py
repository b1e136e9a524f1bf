"""``python -m bench.benchmark_geglu``: SDXL's feed-forward gate, forward and backward, at a training call's shapes.

A training call at batch 16 and 1024 px runs 10 GEGLUs on 4096 tokens an image (640 channels, a gate 2560 wide) and
60 on 1024 tokens (1280 channels, 5120 wide). This times one of each, trained: diffusers' maths compiled by inductor
(the baseline: what a worker ran before ``headshot::geglu``) against ``headshot::geglu`` inside the same compiled
function, with each Triton block shape of ``--blocks`` (rows x columns x warps; the first is the kernel module's).
Each figure is GPU kernel time from the profiler (the host's launches stay out, as in a training call replayed from
CUDA graphs), of the forward alone and of forward plus backward; the backward's time is their difference, and its rate
counts the least traffic it needs (read the projection and the gradient, write the projection's gradient) against a
device-to-device copy's rate. A GPU only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import describe_run

__all__ = ["LEVELS", "main"]

# (tokens an image, gate width, GEGLUs in a training call) at 1024 px
LEVELS = ((4096, 2560, 10), (1024, 5120, 60))
BLOCKS = "4x512x4,8x512x8,2x1024x4,1x2048x8,16x256x8"


def _kernel_ms(run: Callable[[], object], repeats: int = 10) -> float:
    """GPU kernel time of one ``run``, summed from the profiler over ``repeats`` runs after 3 warm-up runs: launch and
    autograd overhead on the host stay out (they rival these sub-millisecond kernels; a training call replays them
    from a CUDA graph)."""
    import torch
    from torch.profiler import DeviceType, ProfilerActivity, profile

    for _ in range(3):
        run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        for _ in range(repeats):
            run()
        torch.cuda.synchronize()
    device_us = sum(event.device_time for event in profiler.events() if event.device_type == DeviceType.CUDA)
    return device_us / 1e3 / repeats


def _time_gate(gate: Callable[[Any], Any], projected: Any, grad: Any) -> tuple[float, float]:
    """Forward ms and backward ms (forward plus backward, less the forward) of ``gate``'s kernels, compiled."""
    import torch

    compiled = torch.compile(gate, fullgraph=True)

    def forward() -> None:
        compiled(projected)

    def both() -> None:
        projected.grad = None
        compiled(projected).backward(grad)

    forward_ms = _kernel_ms(forward)
    return forward_ms, _kernel_ms(both) - forward_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_geglu", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="images a call (default: an H200 worker's plan)")
    parser.add_argument("--blocks", default=BLOCKS, help=f"Triton blocks, rows x columns x warps ({BLOCKS})")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import torch
    import torch._dynamo
    from torch.nn import functional

    import pipeline.diffusion.geglu  # noqa: F401  (registers headshot::geglu)
    from pipeline.diffusion import geglu_kernel

    if not torch.cuda.is_available():
        parser.error("the GEGLU kernels are CUDA kernels; this machine has no CUDA GPU")

    def diffusers_gate(projected: Any) -> Any:
        value, gate = projected.chunk(2, dim=-1)
        return value * functional.gelu(gate)

    def operator_gate(projected: Any) -> Any:
        return torch.ops.headshot.geglu(projected)

    bandwidth = _bandwidth_gbs()
    results: dict[str, Any] = {**describe_run("sdxl"), "batch": args.batch, "copy_gbs": bandwidth, "levels": []}
    per_call: dict[str, float] = {}
    for tokens, width, count in LEVELS:
        rows = args.batch * tokens
        projected = torch.randn(rows, 2 * width, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        grad = torch.randn(rows, width, device="cuda", dtype=torch.bfloat16)
        least_gb = 5 * rows * width * 2 / 1e9  # backward: read 2 halves and the gradient, write 2 halves
        level: dict[str, Any] = {"rows": rows, "width": width, "per_call": count, "backward_least_gb": least_gb}
        variants: list[tuple[str, Callable[[Any], Any], tuple[int, int, int] | None]] = [
            ("inductor (diffusers' maths)", diffusers_gate, None)
        ]
        for block in args.blocks.split(","):
            rows_, columns, warps = (int(part) for part in block.split("x"))
            variants.append((f"headshot::geglu {block}", operator_gate, (rows_, columns, warps)))
        for label, gate, blocks in variants:
            if blocks is not None:
                geglu_kernel.ROWS, geglu_kernel.COLUMNS, geglu_kernel.WARPS = blocks
            torch._dynamo.reset()
            forward_ms, backward_ms = _time_gate(gate, projected, grad)
            level[label] = {
                "forward_ms": round(forward_ms, 3),
                "backward_ms": round(backward_ms, 3),
                "backward_gbs": round(least_gb / backward_ms * 1e3, 0),
            }
            per_call[label] = per_call.get(label, 0.0) + count * (forward_ms + backward_ms)
        results["levels"].append(level)
        print(json.dumps(level), flush=True)
    results["ms_per_training_call"] = {label: round(ms, 1) for label, ms in per_call.items()}
    print(json.dumps(results), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _bandwidth_gbs() -> float:
    """A device-to-device copy's rate (read plus write), the ceiling the backward's rate is read against."""
    import torch

    source = torch.empty(1 << 30, device="cuda", dtype=torch.uint8)
    target = torch.empty_like(source)
    ms = _kernel_ms(lambda: target.copy_(source))
    return round(2 * source.numel() / 1e9 / ms * 1e3, 0)


if __name__ == "__main__":
    raise SystemExit(main())
