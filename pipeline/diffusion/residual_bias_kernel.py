"""The Triton kernel behind ``headshot::add_residual_bias`` on CUDA (``pipeline.diffusion.residual_bias`` says why).

Either layout is a matrix whose rows are contiguous: NCHW-contiguous, a (sample, channel) row of pixels, the bias
one value a row; channels-last, a (sample, pixel) row of channels, the bias one value a column. A program takes a
tile of ``TILE_ROWS`` rows by ``TILE_COLUMNS`` columns, so no element divides by anything and each row's part is
one contiguous run. The kernel's name has "add" and no "norm" in it: ``bench.profiling`` sorts it among the
elementwise kernels, where the passes it replaces were.
(Triton reads a kernel's annotations and takes only ``tl.constexpr`` there: see ``group_norm_kernel``.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

__all__ = ["TILE_COLUMNS", "TILE_ROWS", "add_residual_bias", "fits"]

# 64 columns: SDXL's 320, 640 and 1280 channels in whole tiles, and 128 bytes of bfloat16 a row.
TILE_ROWS = 32
TILE_COLUMNS = 64
WARPS = 4


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _add_residual_bias(  # type: ignore[no-untyped-def]
    x, residual, bias, out, rows, columns, channels,
    tile_rows: tl.constexpr, tile_columns: tl.constexpr, bias_on_rows: tl.constexpr,
):  # fmt: skip
    """``out = x + residual + bias`` summed in float32 and rounded once, ``bias`` a row's (``bias_on_rows``: the
    row's channel, ``row % channels``) or a column's."""
    row = tl.program_id(0) * tile_rows + tl.arange(0, tile_rows)  # int32: a channel's index divides fast
    column = tl.program_id(1) * tile_columns + tl.arange(0, tile_columns)
    has_row, has_column = row < rows, column < columns
    inside = has_row[:, None] & has_column[None, :]
    offset = row.to(tl.int64)[:, None] * columns + column[None, :]
    value = tl.load(x + offset, mask=inside, other=0.0).to(tl.float32)
    value += tl.load(residual + offset, mask=inside, other=0.0).to(tl.float32)
    if bias_on_rows:
        value += tl.load(bias + row % channels, mask=has_row, other=0.0).to(tl.float32)[:, None]
    else:
        value += tl.load(bias + column, mask=has_column, other=0.0).to(tl.float32)[None, :]
    tl.store(out + offset, value.to(out.dtype.element_ty), mask=inside)


def fits(x: torch.Tensor) -> bool:
    """Whether the kernel takes ``x``: its rows counted in int32 (under 2**31 (sample, pixel)s or (sample, channel)s)
    and an NCHW tensor's pixels within the grid's second axis (65,535 tiles of ``TILE_COLUMNS``: a latent of 4.2
    million pixels, an image of 16k by 16k). Anything larger runs the operator's torch maths."""
    samples, channels = x.shape[:2]
    pixels = x.shape[2] * x.shape[3]
    return samples * max(channels, pixels) < 2**31 - TILE_ROWS and pixels <= 65535 * TILE_COLUMNS


def add_residual_bias(x: torch.Tensor, residual: torch.Tensor, bias: torch.Tensor, nhwc: bool) -> torch.Tensor:
    """``headshot::add_residual_bias`` on CUDA tensors: ``x + residual + bias`` per channel, ``x`` and ``residual``
    of one shape, dtype and layout (channels-last where ``nhwc``, else NCHW-contiguous), the result in that layout."""
    samples, channels = x.shape[:2]
    pixels = x.shape[2] * x.shape[3]
    out = torch.empty_like(x)
    if not x.numel():
        return out
    rows, columns = (samples * pixels, channels) if nhwc else (samples * channels, pixels)
    grid = (triton.cdiv(rows, TILE_ROWS), triton.cdiv(columns, TILE_COLUMNS))
    _add_residual_bias[grid](
        x, residual, bias, out, rows, columns, channels,
        tile_rows=TILE_ROWS, tile_columns=TILE_COLUMNS, bias_on_rows=not nhwc, num_warps=WARPS,
    )  # fmt: skip
    return out
