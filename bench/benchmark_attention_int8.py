"""``python -m bench.benchmark_attention_int8``: SDXL's attentions at a render's sizes, as a worker runs them (torch's
``scaled_dot_product_attention``, which picks cuDNN's bf16 flash attention on a Hopper GPU, on diffusers' per-head
views) against ``headshot::attention_int8``'s Triton kernel (``bench.attention_int8_kernel``: the
queries by the keys in int8, each key by a scale of its own, the weights by the values in bf16), and the same kernel
with one scale for each tile of keys (``int8_tilek``), with the keys rounded by a pass of their own first
(``int8_prekeys``), with its second product in e4m3 (``int8_fp8pv``), and with its first in bf16 (``bf16qk``: the
kernel itself against cuDNN's), on this GPU.

Each of the UNet call's four attention shapes at a 928x1152 render's CFG batch 8 (self- and cross-attention at both
levels, head size 64): each way's median of ``--repeats`` replays of a CUDA graph of it, times the attentions a UNet
call has of that shape (10 and 60); each way's output's relative difference from the exact attention of the same
bf16 inputs (float64), on random tokens whose logits spread as ``--logit-spread`` says.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import add_tiles_option, describe_run, median_gpu_seconds, parse_tiles, per_unet_call

__all__ = ["SHAPES", "main", "time_shape"]

# (name, queries, keys, heads, attentions of the shape a UNet call) at CFG batch 8, 928x1152: the first level's 72x58
# tokens and the second's 36x29, each attending to itself and to the prompt's 77 tokens.
SHAPES = (
    ("self 640", 72 * 58, 72 * 58, 10, 10),
    ("cross 640", 72 * 58, 77, 10, 10),
    ("self 1280", 36 * 29, 36 * 29, 20, 60),
    ("cross 1280", 36 * 29, 77, 20, 60),
)
BATCH, HEAD = 8, 64
TILE_FIELDS = "QUERIESxKEYSxWARPSxSTAGES"
WAYS = ("worker", "int8", "int8_tilek", "int8_prekeys", "int8_fp8pv", "bf16qk")


def time_shape(
    queries: int,
    keys: int,
    heads: int,
    *,
    repeats: int,
    spread: float,
    tiles: tuple[tuple[int, ...], ...] = (),
) -> dict[str, Any]:
    """Each way at one shape: milliseconds, and its output's difference from the exact attention."""
    import torch
    from torch.nn import functional

    from bench.attention_int8_kernel import attention

    torch.manual_seed(0)
    width = heads * HEAD
    # Queries and keys of unit spread per element scaled so their logits' spread is ``spread``; values of unit spread.
    q = torch.randn(BATCH, queries, width, device="cuda").mul(spread**0.5).bfloat16()
    k, v = (torch.randn(BATCH, keys, width, device="cuda").mul(factor).bfloat16() for factor in (spread**0.5, 1.0))

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(BATCH, -1, heads, HEAD).transpose(1, 2)

    def worker() -> torch.Tensor:  # diffusers' AttnProcessor2_0
        out = functional.scaled_dot_product_attention(split(q), split(k), split(v))
        return out.transpose(1, 2).reshape(BATCH, queries, width)

    def kernel(**options: Any) -> Callable[[], torch.Tensor]:
        defaults = {"qk_int8": True, "k_per_token": True, "keys_int8": False, "pv_float8": False}
        return functools.partial(attention, q, k, v, heads, HEAD**-0.5, **{**defaults, **options})

    ways: dict[str, Callable[[], torch.Tensor]] = {
        "worker": worker,
        "int8": kernel(),
        "int8_tilek": kernel(k_per_token=False),
        "int8_prekeys": kernel(keys_int8=True),
        "int8_fp8pv": kernel(pv_float8=True),
        "bf16qk": kernel(qk_int8=False),
    }
    for tile in tiles:
        ways["int8_" + "x".join(map(str, tile))] = kernel(tiles=tile)
    figures: dict[str, Any] = {"queries": queries, "keys": keys, "heads": heads}
    with torch.no_grad():
        exact = torch.softmax(split(q).double() @ split(k).double().transpose(-1, -2) * HEAD**-0.5, dim=-1)
        exact = (exact @ split(v).double()).transpose(1, 2).reshape(BATCH, queries, width)
        for name, call in ways.items():
            try:
                figures[f"{name}_ms"] = round(median_gpu_seconds(call, repeats, replayed=True) * 1e3, 4)
            except Exception as error:  # a tile this card or triton cannot run (shared memory): say so
                if name in WAYS:
                    raise
                figures[f"{name}_ms"] = f"{type(error).__name__}: {str(error)[:120]}"
                continue
            figures[f"{name}_error_vs_exact"] = round(float((call().double() - exact).norm() / exact.norm()), 5)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark_attention_int8", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--logit-spread", type=float, default=1.0, help="the random logits' standard deviation (default: 1)"
    )
    add_tiles_option(parser, "int8 kernel", TILE_FIELDS, "128x64x4x3")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    tiles = parse_tiles(parser, args, TILE_FIELDS)
    import torch

    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: the attentions compared are GPU kernels")
    results: dict[str, Any] = {
        **describe_run("sdxl"),
        "timing": "CUDA graph replays",
        "logit_spread": args.logit_spread,
        "shapes": [],
    }
    for name, queries, keys, heads, calls in SHAPES:
        figures = {
            "shape": name,
            **time_shape(queries, keys, heads, repeats=args.repeats, spread=args.logit_spread, tiles=tiles),
            "calls": calls,
        }
        results["shapes"].append(figures)
        print("attention", json.dumps(figures), flush=True)
    per_unet_call(results, "shapes", "calls", "attentions", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
