"""The Triton kernel behind ``headshot::subpixel_interleave`` on CUDA (``pipeline.diffusion.subpixel_conv`` says why).

Channels-last tensors only: an output row is one pixel's channels, read from its phase's channels of one input
pixel, both contiguous. A program takes ``TILE_ROWS`` output pixels by ``TILE_COLUMNS`` channels; each of its rows
finds its phase and input pixel once (integer divisions a row, not an element). The kernel's name has no "norm",
"conv" or "add" in it: ``bench.profiling`` sorts it among the elementwise kernels, where the upsampling pass it
replaces was.
(Triton reads a kernel's annotations and takes only ``tl.constexpr`` there: see ``group_norm_kernel``.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

__all__ = ["TILE_COLUMNS", "TILE_ROWS", "fits", "subpixel_interleave"]

# 64 channels: SDXL's 640 and 1280 in whole tiles, 128 bytes of bfloat16 a row.
TILE_ROWS = 32
TILE_COLUMNS = 64
WARPS = 4


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _subpixel_interleave(  # type: ignore[no-untyped-def]
    phases, bias, out, rows, channels, height, width, tile_rows: tl.constexpr, tile_columns: tl.constexpr
):
    """``out[n, 2i + a, 2j + b, c] = phases[n, i + a, j + b, (2a + b) * channels + c] + bias[c]`` (channels-last
    storage, (height + 1) by (width + 1) phase pixels), summed in float32 and rounded once."""
    row = tl.program_id(0) * tile_rows + tl.arange(0, tile_rows)  # an output pixel: (n, y, x)
    column = tl.program_id(1) * tile_columns + tl.arange(0, tile_columns)
    has_row, has_column = row < rows, column < channels
    inside = has_row[:, None] & has_column[None, :]
    x = row % (2 * width)
    y = (row // (2 * width)) % (2 * height)
    sample = row // (4 * height * width)
    a, b = y % 2, x % 2
    source = (sample * (height + 1) + y // 2 + a) * (width + 1) + x // 2 + b
    offset = source.to(tl.int64)[:, None] * (4 * channels) + ((2 * a + b) * channels)[:, None] + column[None, :]
    value = tl.load(phases + offset, mask=inside, other=0.0).to(tl.float32)
    value += tl.load(bias + column, mask=has_column, other=0.0).to(tl.float32)[None, :]
    tl.store(out + row.to(tl.int64)[:, None] * channels + column[None, :], value.to(out.dtype.element_ty), mask=inside)


def fits(phases: torch.Tensor) -> bool:
    """Whether the kernel's int32 pixel indices hold every output and phase pixel of ``phases``."""
    samples, _, rows, columns = phases.shape
    return 4 * samples * rows * columns < 2**31 - TILE_ROWS


def subpixel_interleave(phases: torch.Tensor, bias: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``headshot::subpixel_interleave`` on a channels-last CUDA tensor ``phases`` (N, 4C, height + 1, width + 1):
    the (N, C, 2 height, 2 width) output, channels-last."""
    samples, channels = phases.shape[0], phases.shape[1] // 4
    shape = (samples, channels, 2 * height, 2 * width)
    out = torch.empty(shape, dtype=phases.dtype, device=phases.device, memory_format=torch.channels_last)
    rows = samples * 4 * height * width
    if rows and channels:
        grid = (triton.cdiv(rows, TILE_ROWS), triton.cdiv(channels, TILE_COLUMNS))
        _subpixel_interleave[grid](
            phases, bias, out, rows, channels, height, width,
            tile_rows=TILE_ROWS, tile_columns=TILE_COLUMNS, num_warps=WARPS,
        )  # fmt: skip
    return out
