"""The fused feed-forward entry of ``bench.benchmark_geglu_float8`` (``bench.geglu_gemm_kernel``): it computes what a
worker's FP8 product and gate compute, on every row and column, and compiles for the H200 with FP8 products."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional

MODULE = "bench.geglu_gemm_kernel"


def _worker_maths(
    x: torch.Tensor, weight: torch.Tensor, scales: tuple[float, float, float], bias: torch.Tensor
) -> torch.Tensor:
    """The worker's way in float32: the projection, ``value * gelu(gate)``, divided by the next layer's scale (before
    its e4m3 cast)."""
    input_scale, weight_scale, out_scale = scales
    projected = (x.float() @ weight.float().t()) * (input_scale * weight_scale) + bias.float()
    value, gate = projected.chunk(2, dim=-1)
    return (value * functional.gelu(gate) / out_scale).clamp(-448, 448)


def test_the_kernel_gates_the_fp8_product_on_every_row_and_column(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    kernels = triton_kernels(MODULE, {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_M": 2})
    generator = torch.Generator().manual_seed(0)
    # Rows, inner columns and features no multiples of the tiles: partial tiles on every axis, the reduction included.
    rows, features, inner = 37, 80, 40
    fp8 = torch.float8_e4m3fn
    x = (torch.randn(rows, features, generator=generator) * 4).clamp(-448, 448).to(fp8)
    weight = (torch.randn(2 * inner, features, generator=generator) * 64).clamp(-448, 448).to(fp8)
    bias = torch.randn(2 * inner, generator=generator).bfloat16()
    scales = (0.05, 1 / 64 / features**0.5, 0.01)
    device = kernels.device
    tensors = [torch.tensor(scale, device=device) for scale in scales]
    call = (x.to(device), weight.to(device), tensors[0], tensors[1], bias.to(device), tensors[2])
    (out,) = kernels.run([("geglu_gemm", call)])
    assert out.shape == (rows, inner) and out.dtype == fp8
    expected = _worker_maths(x, weight, scales, bias)
    # Each output is its e4m3 rounding of the same float32 value (summed in another order): within one e4m3 step
    # (an eighth of its binade), where a column of the gate's or the value's read from the wrong place misses by far.
    got = out.cpu().float()
    binade = torch.exp2(torch.floor(torch.log2(expected.abs().clamp(min=2**-6))))
    if kernels.interpreted:
        # The interpreter's e4m3 cast truncates, and where rounding would carry into the exponent it drops a binade
        # (7.87 to 4.0, not 8.0; a GPU's rounds to 8.0): held to the value only clear of those carries.
        clear = expected.abs() < torch.exp2(torch.floor(torch.log2(expected.abs().clamp(min=2**-12)))) * 1.875
        got, expected, binade = got[clear], expected[clear], binade[clear]
    assert bool(((got - expected).abs() <= binade * 2**-3 * 1.01 + 2**-9).all())
    assert float((got - expected).norm() / expected.norm()) < 0.04


def test_the_kernel_compiles_for_the_h200_with_fp8_products_and_no_spills(
    h200_compile: Callable[[str, list[tuple[str, tuple[Any, ...]]]], tuple[list[Any], dict[str, dict[str, int]]]],
) -> None:
    def meta(*shape: int, dtype: torch.dtype = torch.float8_e4m3fn) -> torch.Tensor:
        return torch.empty(shape, device="meta", dtype=dtype)

    # SDXL's second level at a 928x1152 render's CFG batch 8: 8,352 tokens, 1,280 features, 5,120 inner.
    scale = meta(dtype=torch.float32)
    call = (meta(8352, 1280), meta(10240, 1280), scale, scale, meta(10240, dtype=torch.bfloat16), scale)
    compiled, figures = h200_compile(MODULE, [("geglu_gemm", call)])
    assert len(compiled) == 1 and "wgmma.mma_async" in compiled[0].asm["ptx"] and "cp.async" in compiled[0].asm["ptx"]
    for name, kernel_figures in figures.items():
        assert kernel_figures["spill_bytes"] == 0, (name, kernel_figures)
