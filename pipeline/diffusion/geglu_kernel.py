"""Triton kernels behind ``headshot::geglu`` and its backward on CUDA (``pipeline.diffusion.geglu`` says why).

A program takes ``ROWS`` rows by ``COLUMNS`` columns of the gate's width: for each (value, gate) pair it reads the
pair once (and, backward, the output's gradient once), evaluates the gate's ``erf`` once, and writes its results
into their halves of the output. Rows and columns come from the grid, so no element divides by the row length, and
each row's columns are contiguous, so loads and stores are vectorised. (Triton reads a kernel's annotations, and
takes only ``tl.constexpr`` there: the pointers and sizes go unannotated, and no ``from __future__ import
annotations`` turns the annotations into names to look up.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

__all__ = ["COLUMNS", "ROWS", "geglu_backward_rows", "geglu_forward_rows"]

ROWS = 4
COLUMNS = 512
WARPS = 4


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _pairs(projected, rows, width, block_rows: tl.constexpr, block_columns: tl.constexpr):  # type: ignore[no-untyped-def]
    """This program's tile: its elements' offsets in a tensor of the gate's width and in ``projected``, the mask,
    and the (value, gate) pairs in float32."""
    row = tl.program_id(0) * block_rows + tl.arange(0, block_rows)[:, None]
    column = tl.program_id(1) * block_columns + tl.arange(0, block_columns)[None, :]
    inside = (row < rows) & (column < width)
    row = row.to(tl.int64)
    half = row * width + column
    pair = row * (2 * width) + column
    value = tl.load(projected + pair, mask=inside).to(tl.float32)
    gate = tl.load(projected + pair + width, mask=inside).to(tl.float32)
    return half, pair, inside, value, gate


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _geglu_forward(projected, out, rows, width, block_rows: tl.constexpr, block_columns: tl.constexpr):  # type: ignore[no-untyped-def]
    half, pair, inside, value, gate = _pairs(projected, rows, width, block_rows, block_columns)
    gelu = gate * 0.5 * (1.0 + tl.math.erf(gate * 0.7071067811865476))
    tl.store(out + half, (value * gelu).to(out.dtype.element_ty), mask=inside)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _geglu_backward(projected, grad, out, rows, width, block_rows: tl.constexpr, block_columns: tl.constexpr):  # type: ignore[no-untyped-def]
    half, pair, inside, value, gate = _pairs(projected, rows, width, block_rows, block_columns)
    upstream = tl.load(grad + half, mask=inside).to(tl.float32)
    cdf = 0.5 * (1.0 + tl.math.erf(gate * 0.7071067811865476))
    pdf = tl.exp(-0.5 * gate * gate) * 0.3989422804014327
    tl.store(out + pair, (upstream * gate * cdf).to(out.dtype.element_ty), mask=inside)
    tl.store(out + pair + width, (upstream * value * (cdf + gate * pdf)).to(out.dtype.element_ty), mask=inside)


def _grid(rows: int, width: int) -> tuple[int, int]:
    return triton.cdiv(rows, ROWS), triton.cdiv(width, COLUMNS)


def geglu_forward_rows(projected: torch.Tensor) -> torch.Tensor:
    """``headshot::geglu`` on a CUDA tensor."""
    projected = projected.contiguous()
    width = projected.shape[-1] // 2
    rows = projected.numel() // max(2 * width, 1)
    out = projected.new_empty((*projected.shape[:-1], width))
    if out.numel():
        _geglu_forward[_grid(rows, width)](
            projected, out, rows, width, block_rows=ROWS, block_columns=COLUMNS, num_warps=WARPS
        )
    return out


def geglu_backward_rows(projected: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``headshot::geglu_backward`` on CUDA tensors."""
    projected, grad = projected.contiguous(), grad.contiguous()
    width = projected.shape[-1] // 2
    rows = projected.numel() // max(2 * width, 1)
    out = torch.empty_like(projected, memory_format=torch.contiguous_format)
    if out.numel():
        _geglu_backward[_grid(rows, width)](
            projected, grad, out, rows, width, block_rows=ROWS, block_columns=COLUMNS, num_warps=WARPS
        )
    return out
