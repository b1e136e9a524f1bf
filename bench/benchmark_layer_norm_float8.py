"""``python -m bench.benchmark_layer_norm_float8``: a transformer block's residual add, layer norm and FP8 input cast
at a render's sizes, as inductor compiles them inside a worker's blocks (its default mode, and tuned by coordinate
descent), against one Triton kernel that keeps each token in registers (``bench.layer_norm_float8_kernel``), on this
GPU.

Both levels of SDXL's transformers at a 928x1152 render's CFG batch 8, each with the add (a block's second and
third norms) and without (its first): each way's median of ``--repeats`` replays of a CUDA graph of it, times the
norms a UNet call has of that kind (20 and 10 at the first level, 120 and 60 at the second); the share of the card's
bandwidth each reaches (bytes read and written over time, against ``--bandwidth``); and the share of the kernel's
e4m3 values that differ from inductor's (the same maths, summed in another order).
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import add_tiles_option, describe_run, median_gpu_seconds, parse_tiles, per_unet_call

__all__ = ["NORMS", "main", "time_norm"]

# (tokens of CFG batch 8 at 928x1152, channels, with the residual add, norms of the kind a UNet call)
NORMS = (
    (8 * 72 * 58, 640, True, 20),
    (8 * 72 * 58, 640, False, 10),
    (8 * 36 * 29, 1280, True, 120),
    (8 * 36 * 29, 1280, False, 60),
)
TILE_FIELDS = "ROWSxWARPS"
EPS = 1e-5  # diffusers' BasicTransformerBlock norms


def time_norm(
    tokens: int, width: int, add: bool, *, repeats: int, bandwidth: float, tiles: tuple[tuple[int, ...], ...] = ()
) -> dict[str, Any]:
    """Each way at one norm's size: milliseconds, bandwidth share, and the kernel's e4m3 values against inductor's."""
    import torch
    import torch._inductor.config
    from torch.nn import functional

    from bench.layer_norm_float8_kernel import add_layer_norm_float8

    torch.manual_seed(0)
    a = torch.randn(tokens, width, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(tokens, width, device="cuda", dtype=torch.bfloat16) if add else None
    weight = (1 + 0.1 * torch.randn(width, device="cuda")).bfloat16()
    bias = (0.1 * torch.randn(width, device="cuda")).bfloat16()
    scale = torch.tensor(4.0 / 448, device="cuda")

    def worker_ops(x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        total = x + y if y is not None else None
        normed = functional.layer_norm(total if total is not None else x, (width,), weight, bias, EPS)
        return total, (normed.float() / scale).clamp(-448, 448).to(torch.float8_e4m3fn)

    def tuned_ops(x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        return worker_ops(x, y)  # a frame of its own: dynamo keeps its compiled code apart from ``compiled``'s

    compiled = torch.compile(worker_ops, fullgraph=True)
    with torch._inductor.config.patch(coordinate_descent_tuning=True):
        tuned = torch.compile(tuned_ops, fullgraph=True)
        tuned(a, b)  # compiles and tunes here, under the patch
    ways: dict[str, Callable[[], Any]] = {
        "inductor": functools.partial(compiled, a, b),
        "inductor_tuned": functools.partial(tuned, a, b),
        "kernel": functools.partial(add_layer_norm_float8, a, b, weight, bias, EPS, scale),
    }
    for tile in tiles:
        ways["kernel_" + "x".join(map(str, tile))] = functools.partial(
            add_layer_norm_float8, a, b, weight, bias, EPS, scale, tiles=tile
        )
    # Bytes each way must move: the inputs read, the sum (bf16) and the e4m3 output written.
    moved = tokens * width * ((2 + 2 + 2 + 1) if add else (2 + 1))
    figures: dict[str, Any] = {"tokens": tokens, "width": width, "add": add}
    with torch.no_grad():
        reference = ways["inductor"]()
        for name, call in ways.items():
            seconds = median_gpu_seconds(call, repeats, replayed=True)
            figures[f"{name}_ms"] = round(seconds * 1e3, 4)
            figures[f"{name}_bandwidth_share"] = round(moved / seconds / bandwidth, 3)
            total, out = call()
            figures[f"{name}_differing_share"] = round(float((out.float() != reference[1].float()).float().mean()), 5)
            if add:
                figures[f"{name}_sum_equal"] = bool(torch.equal(total, reference[0]))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark_layer_norm_float8", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--bandwidth", type=float, default=3.35e12, help="the card's memory bandwidth, bytes/s (default: an H100's)"
    )
    add_tiles_option(parser, "kernel", TILE_FIELDS, "2x8")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    tiles = parse_tiles(parser, args, TILE_FIELDS)
    import torch

    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: the norms compared are GPU kernels")
    results: dict[str, Any] = {**describe_run("sdxl"), "timing": "CUDA graph replays", "norms": []}
    for tokens, width, add, count in NORMS:
        figures = {
            **time_norm(tokens, width, add, repeats=args.repeats, bandwidth=args.bandwidth, tiles=tiles),
            "norms": count,
        }
        results["norms"].append(figures)
        print("norm", json.dumps(figures), flush=True)
    per_unet_call(results, "norms", "norms", "layer norms", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
