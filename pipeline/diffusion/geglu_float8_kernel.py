"""The Triton kernel behind ``headshot::geglu_float8`` on CUDA (``pipeline.diffusion.geglu_float8`` says why):
SDXL's feed-forward entry, the GEGLU's projection in FP8 and ``value * gelu(gate)`` cast to e4m3 for the next layer,
in one kernel.

Each program computes one tile of the value's columns and the same tile of the gate's, two accumulators over one
loop through the input, and its epilogue applies both scales and the bias, gates, divides by the next layer's input
scale and writes e4m3: the bf16 projection never goes through memory.

The products accumulate in the tensor cores' FP8 accumulator, which keeps fewer bits than float32 (~14, DeepSeek-V3's
report; Triton's default on Hopper, cuBLAS's ``use_fast_accum``). Promoted to float32 after every reduction tile
(``precise=True``, as cuBLAS's FP8 products did before ``float8.FAST_ACCUMULATION``), the kernel took 32% longer and
gained nothing: each way's e4m3 output is 2.65% from the exact gate of the same operands, its own rounding
(BENCHMARKS.md 2026-12-06 twenty-second session).
(Triton reads a kernel's annotations and takes only ``tl.constexpr`` there: see ``group_norm_kernel``.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

from pipeline.diffusion.float8_conv_kernel import grouped_tile

__all__ = ["BLOCK_K", "BLOCK_M", "BLOCK_N", "TMA_LOADS", "geglu_gemm", "tma_capable"]

# Each half's output tile 128 by 128, 8 warps, 3 stages: the fastest of seven tiles at both SDXL levels on an H100
# (21.2 against 22.0 ms a render call's worth for 128 by 64; BENCHMARKS.md 2026-12-06 twenty-second session).
BLOCK_M = 128
BLOCK_N = 128
BLOCK_K = 128
WARPS = 8
STAGES = 3
GROUP_M = 8
# Whether ``geglu_gemm`` loads its operands' tiles by the tensor memory accelerator (``_geglu_gemm_tma``) or by
# pointers: by TMA, a render call's entries took 18.1 against 19.3 ms, and the replayed render call 0.0986 against
# 0.1000 s on an H100, the same e4m3 outputs (BENCHMARKS.md 2026-12-06 twenty-third session).
TMA_LOADS = True


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _geglu_gemm(  # type: ignore[no-untyped-def]
    x, weight, input_scale, weight_scale, bias, out_scale, out, rows, inner, features,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    PROMOTE: tl.constexpr,
):  # fmt: skip
    """``out = fp8((v * gelu(g)) / so)`` for ``[v, g] = x @ weight.T * si * sw + bias``: ``x`` (rows, features) e4m3,
    ``weight`` (2 inner, features) e4m3, its first ``inner`` rows the value's and the rest the gate's."""
    tile_m, tile_n = grouped_tile(rows, inner, BLOCK_M, BLOCK_N, GROUP_M)
    row = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    column = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    has_row, has_column = row < rows, column < inner
    reduction = tl.arange(0, BLOCK_K)
    value = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, features, BLOCK_K):
        k = start + reduction
        has_k = k < features
        a_mask = has_row[:, None] & has_k[None, :]
        a = tl.load(x + row.to(tl.int64)[:, None] * features + k[None, :], mask=a_mask, other=0.0)
        w_offset = column.to(tl.int64)[None, :] * features + k[:, None]  # (BLOCK_K, BLOCK_N), the reduction innermost
        w_mask = has_column[None, :] & has_k[:, None]
        value_weight = tl.load(weight + w_offset, mask=w_mask, other=0.0)
        gate_weight = tl.load(weight + inner * features + w_offset, mask=w_mask, other=0.0)
        value = tl.dot(a, value_weight, value, max_num_imprecise_acc=PROMOTE)
        gate = tl.dot(a, gate_weight, gate, max_num_imprecise_acc=PROMOTE)
    _gate_and_store(value, gate, row, column, input_scale, weight_scale, bias, out_scale, out, rows, inner)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _geglu_gemm_tma(  # type: ignore[no-untyped-def]
    x_desc, w_desc, input_scale, weight_scale, bias, out_scale, out, rows, inner, features,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """``_geglu_gemm`` with its operands' tiles loaded by the tensor memory accelerator (``x_desc`` and ``w_desc``
    describe ``x`` and ``weight``): no address arithmetic or masks in the loop, reads past an edge zero-filled. A value
    tile past ``inner`` reads gate rows; its columns are never stored."""
    tile_m, tile_n = grouped_tile(rows, inner, BLOCK_M, BLOCK_N, GROUP_M)
    value = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, features, BLOCK_K):
        a = x_desc.load([tile_m * BLOCK_M, start])
        value = tl.dot(a, w_desc.load([tile_n * BLOCK_N, start]).T, value)
        gate = tl.dot(a, w_desc.load([inner + tile_n * BLOCK_N, start]).T, gate)
    row = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    column = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    _gate_and_store(value, gate, row, column, input_scale, weight_scale, bias, out_scale, out, rows, inner)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _gate_and_store(  # type: ignore[no-untyped-def]
    value, gate, row, column, input_scale, weight_scale, bias, out_scale, out, rows, inner,
):  # fmt: skip
    """The epilogue: both scales and the bias, ``value * gelu(gate)`` divided by the next layer's scale, stored in
    e4m3 where ``row`` and ``column`` fall inside the output."""
    has_row, has_column = row < rows, column < inner
    scale = tl.load(input_scale) * tl.load(weight_scale)
    value = value * scale + tl.load(bias + column, mask=has_column, other=0.0).to(tl.float32)[None, :]
    gate = gate * scale + tl.load(bias + inner + column, mask=has_column, other=0.0).to(tl.float32)[None, :]
    gated = value * (0.5 * gate * (1.0 + tl.erf(gate * 0.7071067811865476)))  # F.gelu's exact form
    gated = tl.clamp(gated / tl.load(out_scale), -448.0, 448.0)  # e4m3's range
    offset = row.to(tl.int64)[:, None] * inner + column[None, :]
    tl.store(out + offset, gated.to(out.dtype.element_ty), mask=has_row[:, None] & has_column[None, :])


def tma_capable(device: torch.device) -> bool:
    """Whether ``device`` is a GPU with the tensor memory accelerator (Hopper, compute capability 9, and newer): Ada's
    cards have FP8 tensor cores, so FP8 rendering runs there, but no TMA."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9


def geglu_gemm(
    x: torch.Tensor,
    weight: torch.Tensor,
    input_scale: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor,
    out_scale: torch.Tensor,
    tma: bool | None = None,
    *,
    precise: bool = False,
    tiles: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """The gated e4m3 (rows, inner) output for ``x`` (rows, features) e4m3 and ``weight`` (2 inner, features) e4m3,
    each by its per-tensor scale, ``bias`` (2 inner,), the result divided by ``out_scale``. ``precise``: the FP8
    products' sums promoted to float32 after every reduction tile, where by default they stay in the tensor cores'
    FP8 accumulator for the whole reduction (Triton's default on Hopper).
    ``tiles``: (rows, columns and reduction of a tile, warps, stages) in place of the module's, for the benchmark's
    search. ``tma``: the operands' tiles loaded by the tensor memory accelerator (``_geglu_gemm_tma``; rows of 16
    bytes' multiples, summed fast); None: as ``TMA_LOADS`` says, where the GPU has one (``tma_capable``). Positional,
    so the kernels' tests and their compile, which call host functions with positional arguments, pick each way."""
    rows, features = x.shape
    inner = weight.shape[0] // 2
    out = torch.empty((rows, inner), dtype=torch.float8_e4m3fn, device=x.device)
    block_m, block_n, block_k, warps, stages = tiles or (BLOCK_M, BLOCK_N, BLOCK_K, WARPS, STAGES)
    if not rows:
        return out
    grid = (triton.cdiv(rows, block_m) * triton.cdiv(inner, block_n),)
    if tma is None:
        tma = TMA_LOADS and tma_capable(x.device)
    if tma and not precise and features % 16 == 0:
        from triton.tools.tensor_descriptor import TensorDescriptor  # type: ignore[import-not-found,unused-ignore]

        x_desc = TensorDescriptor.from_tensor(x, [block_m, block_k])
        w_desc = TensorDescriptor.from_tensor(weight, [block_n, block_k])
        _geglu_gemm_tma[grid](
            x_desc, w_desc, input_scale, weight_scale, bias, out_scale, out, rows, inner, features,
            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=GROUP_M, num_warps=warps, num_stages=stages,
        )  # fmt: skip
    else:
        _geglu_gemm[grid](
            x, weight, input_scale, weight_scale, bias, out_scale, out, rows, inner, features,
            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=GROUP_M, PROMOTE=block_k if precise else None,
            num_warps=warps, num_stages=stages,
        )  # fmt: skip
    return out
