"""The Triton kernel behind ``headshot::lora_linear``'s accumulations on CUDA (``pipeline.diffusion.lora_linear``
says why): ``out += scale * hidden @ weight``, where ``hidden`` has the LoRA's few columns (its rank).

cuBLAS's accumulating product (``addmm_`` with beta 1) ran 29 ms of a batch-16 training call on an H200 for what is
two passes over the outputs (read, write), in tiles sized for long inner dimensions, not a rank of 16
(``nvjet_..._badd`` kernels, BENCHMARKS.md 2026-12-05 eighth session). Here a program takes ``ROWS`` rows by
``COLUMNS`` columns of ``out``: it loads its rows of ``hidden`` and the matching columns of ``weight`` (the whole
rank at once, padded to a power of two of at least 16 for ``tl.dot``), multiplies them in float32, adds the tile of
``out`` it reads, and writes the tile back: each element of ``out`` read once and written once. (Triton reads a
kernel's annotations, and takes only ``tl.constexpr`` there: the pointers and sizes go unannotated, and no ``from
__future__ import annotations`` turns the annotations into names to look up.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

__all__ = ["COLUMNS", "MAX_RANK", "ROWS", "accumulate_product", "rank_block"]

ROWS = 32
COLUMNS = 128
WARPS = 4
# The largest rank a program multiplies at once without spilling (``bench.kernel_compile``); larger ranks run cuBLAS.
MAX_RANK = 64


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _lora_accumulate(  # type: ignore[no-untyped-def]
    out,
    hidden,
    weight,
    rows,
    columns,
    rank,
    scale,
    weight_rank_stride,
    weight_column_stride,
    block_rows: tl.constexpr,
    block_columns: tl.constexpr,
    block_rank: tl.constexpr,
):
    row = tl.program_id(0) * block_rows + tl.arange(0, block_rows)
    column = tl.program_id(1) * block_columns + tl.arange(0, block_columns)
    inner = tl.arange(0, block_rank)
    row_inside, column_inside, inner_inside = row < rows, column < columns, inner < rank
    row = row.to(tl.int64)
    factors = tl.load(
        hidden + row[:, None] * rank + inner[None, :], mask=row_inside[:, None] & inner_inside[None, :], other=0.0
    )
    weights = tl.load(
        weight + inner[:, None] * weight_rank_stride + column[None, :] * weight_column_stride,
        mask=inner_inside[:, None] & column_inside[None, :],
        other=0.0,
    )
    # In float32 (TF32 on the GPU, which holds a 16-bit float exactly): Triton's interpreter multiplies bf16 wrongly.
    product = tl.dot(factors.to(tl.float32), weights.to(tl.float32))
    offsets = row[:, None] * columns + column[None, :]
    inside = row_inside[:, None] & column_inside[None, :]
    total = tl.load(out + offsets, mask=inside).to(tl.float32) + scale * product
    tl.store(out + offsets, total.to(out.dtype.element_ty), mask=inside)


def rank_block(rank: int) -> int:
    """The inner dimension a program multiplies over: ``rank`` padded to a power of two, at least ``tl.dot``'s 16."""
    return max(16, triton.next_power_of_2(rank))


def accumulate_product(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """``out += scale * hidden @ weight`` in place and return ``out``: ``out`` (rows, columns) and ``hidden`` (rows,
    rank, at most ``MAX_RANK``) contiguous CUDA tensors of one 16-bit dtype, ``weight`` (rank, columns) of any
    strides."""
    rows, columns = out.shape
    rank = hidden.shape[1]
    if out.numel() and rank:
        grid = (triton.cdiv(rows, ROWS), triton.cdiv(columns, COLUMNS))
        _lora_accumulate[grid](
            out,
            hidden,
            weight,
            rows,
            columns,
            rank,
            scale,
            weight.stride(0),
            weight.stride(1),
            block_rows=ROWS,
            block_columns=COLUMNS,
            block_rank=rank_block(rank),
            num_warps=WARPS,
        )
    return out
