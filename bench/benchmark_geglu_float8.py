"""``python -m bench.benchmark_geglu_float8``: SDXL's feed-forward entry at a render's sizes, as a worker runs it
(cuBLAS's FP8 product writing the bf16 projection, then inductor's gate-and-cast kernel) against one Triton kernel
that gates in the product's epilogue (``headshot::geglu_float8``'s, ``pipeline.diffusion.geglu_float8_kernel``), its
sums in the tensor cores' FP8 accumulator, and the same kernel promoting them to float32 after every reduction tile
as cuBLAS's does without fast accumulation, and the kernel loading its tiles by the tensor memory accelerator
(``fused_tma``), on this GPU. The worker's product sums as ``float8.FAST_ACCUMULATION`` says (fast since 2026-12-06's
twenty-second session; the figures before it timed cuBLAS promoting).

Both levels of SDXL's transformers at a 928x1152 render's CFG batch 8 (tokens, features, inner): each way's median of
``--repeats`` replays of a CUDA graph of it (as a worker replays its render calls: no host gaps between a way's
kernels; launched from Python the worker's way measured 29.3 ms a call's worth against 21.3 in the render call), times
the blocks a UNet call has at that level (10 and 60); each way's e4m3 output's
relative difference from the exact gate of the same operands (float64, before its e4m3 rounding), and the share of
each kernel's e4m3 values that differ from the worker's.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import add_tiles_option, describe_run, median_gpu_seconds, parse_tiles, per_unet_call

__all__ = ["LEVELS", "main", "time_level"]

# (tokens of CFG batch 8 at 928x1152, features, inner, transformer blocks a UNet call)
LEVELS = ((8 * 72 * 58, 640, 2560, 10), (8 * 36 * 29, 1280, 5120, 60))
TILE_FIELDS = "ROWSxCOLUMNSxREDUCTIONxWARPSxSTAGES"


def time_level(
    rows: int, features: int, inner: int, *, repeats: int, tiles: tuple[tuple[int, ...], ...] = ()
) -> dict[str, Any]:
    """The worker's way and the fused kernel both ways at one level: milliseconds each, and their outputs'
    differences."""
    import torch
    from torch.nn import functional

    from pipeline.diffusion.float8 import FAST_ACCUMULATION
    from pipeline.diffusion.geglu_float8_kernel import geglu_gemm

    torch.manual_seed(0)
    fp8 = torch.float8_e4m3fn
    x = (torch.randn(rows, features, device="cuda") * 4).clamp(-448, 448).to(fp8)
    weight = (torch.randn(2 * inner, features, device="cuda") * 64).clamp(-448, 448).to(fp8)
    bias = torch.randn(2 * inner, device="cuda", dtype=torch.bfloat16) * 0.1
    input_scale = torch.tensor(0.05, device="cuda")
    weight_scale = torch.tensor(1 / 64 / features**0.5, device="cuda")
    out_scale = torch.tensor(0.01, device="cuda")

    @torch.compile(fullgraph=True)
    def gate_and_cast(projected: torch.Tensor) -> torch.Tensor:
        value, gate = projected.chunk(2, dim=-1)
        return (value * functional.gelu(gate)).float().div(out_scale).clamp(-448, 448).to(fp8)

    def worker() -> torch.Tensor:
        projected = torch._scaled_mm(
            x,
            weight.t(),
            scale_a=input_scale,
            scale_b=weight_scale,
            bias=bias,
            out_dtype=torch.bfloat16,
            use_fast_accum=FAST_ACCUMULATION,  # as the worker's FP8 layers sum
        )
        return gate_and_cast(projected)

    def kernel(**options: Any) -> Callable[[], torch.Tensor]:
        return functools.partial(geglu_gemm, x, weight, input_scale, weight_scale, bias, out_scale, **options)

    ways = {
        "worker": worker,
        "fused": kernel(tma=False),
        "fused_promoted": kernel(tma=False, precise=True),
        "fused_tma": kernel(tma=True),
    }
    for tile in tiles:
        ways["fused_" + "x".join(map(str, tile))] = kernel(tma=False, tiles=tile)
    with torch.no_grad():
        # The exact gate of the same e4m3 operands, in float64: what each way rounds to e4m3.
        projected = (x.double() @ weight.double().t()) * (input_scale * weight_scale).double() + bias.double()
        value, gate = projected.chunk(2, dim=-1)
        exact = ((value * functional.gelu(gate)) / out_scale.double()).clamp(-448, 448)
        figures: dict[str, Any] = {"rows": rows, "features": features, "inner": inner}
        for name, call in ways.items():
            try:
                figures[f"{name}_ms"] = round(median_gpu_seconds(call, repeats, replayed=True) * 1e3, 4)
            except Exception as error:  # a way or tile this card or triton cannot run (shared memory, TMA): say so
                if name in ("worker", "fused", "fused_promoted"):
                    raise
                figures[f"{name}_ms"] = f"{type(error).__name__}: {str(error)[:120]}"
        compared = [name for name in ("worker", "fused", "fused_promoted", "fused_tma") if _timed(figures, name)]
        outputs = {name: ways[name]().double() for name in compared}
        for name, out in outputs.items():
            figures[f"{name}_error_vs_exact"] = round(float((out - exact).norm() / exact.norm()), 5)
            if name != "worker":
                figures[f"{name}_differing_share"] = round(float((out != outputs["worker"]).float().mean()), 5)
    return figures


def _timed(figures: dict[str, Any], name: str) -> bool:
    return isinstance(figures.get(f"{name}_ms"), float)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_geglu_float8", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    add_tiles_option(parser, "fused kernel", TILE_FIELDS, "128x128x128x8x3")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    tiles = parse_tiles(parser, args, TILE_FIELDS)
    import torch

    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU with FP8 tensor cores: the products compared are GPU kernels")
    results: dict[str, Any] = {
        **describe_run("sdxl"),
        "timing": "CUDA graph replays",
        "levels": [],
    }
    for rows, features, inner, blocks in LEVELS:
        figures = {**time_level(rows, features, inner, repeats=args.repeats, tiles=tiles), "blocks": blocks}
        results["levels"].append(figures)
        print("geglu", json.dumps(figures), flush=True)
    per_unet_call(results, "levels", "blocks", "feed-forward entries", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
