"""The Triton kernel behind ``headshot::conv3x3_float8`` on CUDA (``pipeline.diffusion.float8_conv`` says why).

An implicit GEMM over a channels-last input: the output is a (pixels, out channels) matrix, and its reduction runs
over the nine taps times the input channels. For tap (dy, dx) an output pixel reads the input pixel ``dy * width +
dx`` rows further on in the (pixels, channels) matrix, masked where that falls outside its image; so each tile of
the reduction is a block of whole rows, contiguous channels, and no im2col copy is ever written. The input comes in
e4m3, divided by its scale already (by the norm before it, or by the operator's cast of a bf16 input); the weight
waits in FP8, each out channel's (tap, in channel) values contiguous: Hopper's FP8 products take both operands
with the reduction innermost. The products accumulate in the tensor cores' FP8 accumulator, which keeps fewer bits
than float32 (~14, DeepSeek-V3's report; Triton's default on Hopper, cuBLAS's ``use_fast_accum``): promoted to
float32 after every reduction tile the convolutions took 41% longer (19.7 against 14.0 ms a render call, cuDNN's
bf16 18.0), each output as far from the float64 convolution within 0.02% (3.69%: its operands' e4m3 rounding
dominates; BENCHMARKS.md 2026-12-06 twenty-second session). The
epilogue multiplies by the input's scale and each out channel's weight scale, adds the bias, and rounds once.

``BLOCK_K`` divides the input channels (so a reduction tile never straddles two taps); the launcher picks it.
(Triton reads a kernel's annotations and takes only ``tl.constexpr`` there: see ``group_norm_kernel``.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

__all__ = ["BLOCK_M", "BLOCK_N", "block_k", "conv3x3_float8", "fits", "grouped_tile"]

# 128 by 128 output tiles, 8 warps, 3 stages: what Triton's autotuner picked from six configurations for 11 of SDXL's
# 12 ResNet convolution shapes on an H100. Tuned at a worker's warm-up instead (~3.5 s a shape), its start came 73 s
# later (BENCHMARKS.md 2026-12-06 twenty-first session). Tests set smaller tiles for the interpreter.
BLOCK_M = 128
BLOCK_N = 128
WARPS = 8
STAGES = 3
GROUP_M = 8
# Hopper's FP8 tensor cores take 32 values of the reduction an instruction: reduction tiles of 32 to 128.
BLOCK_K_CHOICES = (128, 64, 32)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def grouped_tile(rows, columns, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):  # type: ignore[no-untyped-def]
    """This program's (row tile, column tile) of a (``rows``, ``columns``) output, in grouped order: ``GROUP_M`` row
    tiles take each column tile in turn, so its operand stays in L2 for all of them."""
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(rows, BLOCK_M)
    tiles_n = tl.cdiv(columns, BLOCK_N)
    in_group = GROUP_M * tiles_n
    first_m = (pid // in_group) * GROUP_M
    group_m = tl.minimum(tiles_m - first_m, GROUP_M)
    return first_m + (pid % in_group) % group_m, (pid % in_group) // group_m


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _conv3x3_float8(  # type: ignore[no-untyped-def]
    x, weight, weight_scale, input_scale, bias, out, rows, height, width, channels_in, channels_out,
    HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, PROMOTE: tl.constexpr,
):  # fmt: skip
    """``out[p, o] = sum over taps t and channels c of fp8(x[p + shift(t), c] / s) * w[t, c, o] * s * ws[o] + b[o]``
    for the (``rows``, ``channels_in``) channels-last e4m3 input ``x`` (``fp8(x / s)`` already);
    ``shift(t)`` the tap's pixel offset, zero where it leaves the image (the convolution's zero padding)."""
    tile_m, tile_n = grouped_tile(rows, channels_out, BLOCK_M, BLOCK_N, GROUP_M)
    row = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)  # an output pixel (n, y, x), flattened
    column = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    has_row, has_column = row < rows, column < channels_out
    x_pos = row % width
    y_pos = (row // width) % height
    reduction = tl.arange(0, BLOCK_K)
    scale = tl.load(input_scale).to(tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, 9 * channels_in, BLOCK_K):
        tap = start // channels_in
        channel = start - tap * channels_in + reduction
        dy = tap // 3 - 1
        dx = tap % 3 - 1
        y, x_at = y_pos + dy, x_pos + dx
        valid = has_row & (y >= 0) & (y < height) & (x_at >= 0) & (x_at < width)
        source = row + dy * width + dx
        a = tl.load(x + source.to(tl.int64)[:, None] * channels_in + channel[None, :], mask=valid[:, None], other=0.0)
        b = tl.load(
            weight + column.to(tl.int64)[None, :] * (9 * channels_in) + (start + reduction)[:, None],
            mask=has_column[None, :],
            other=0.0,
        )
        acc = tl.dot(a, b, acc, max_num_imprecise_acc=PROMOTE)
    acc *= scale * tl.load(weight_scale + column, mask=has_column, other=0.0)[None, :]
    if HAS_BIAS:
        acc += tl.load(bias + column, mask=has_column, other=0.0).to(tl.float32)[None, :]
    offset = row.to(tl.int64)[:, None] * channels_out + column[None, :]
    tl.store(out + offset, acc.to(out.dtype.element_ty), mask=has_row[:, None] & has_column[None, :])


def block_k(channels_in: int) -> int | None:
    """The reduction tile for ``channels_in`` input channels: the largest of ``BLOCK_K_CHOICES`` that divides it,
    None where none does."""
    return next((k for k in BLOCK_K_CHOICES if channels_in % k == 0), None)


def fits(x: torch.Tensor, channels_out: int) -> bool:
    """Whether the kernel takes ``x``: input channels that a reduction tile divides, out channels a multiple of 16
    (FP8 products), and int32 pixel indices."""
    samples, channels_in, height, width = x.shape
    return (
        block_k(channels_in) is not None
        and channels_out % 16 == 0
        and samples * height * width * max(channels_in, channels_out) < 2**31
    )


def conv3x3_float8(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    input_scale: torch.Tensor,
    bias: torch.Tensor | None,
    out_dtype: torch.dtype,
    *,
    precise: bool = False,
) -> torch.Tensor:
    """``headshot::conv3x3_float8`` on a channels-last e4m3 CUDA tensor ``x`` (N, C, H, W), divided by
    ``input_scale`` already: ``weight`` FP8 (O, 9 C), tap-major; the (N, O, H, W) output in ``out_dtype``,
    channels-last. ``precise``: the products' sums promoted to float32 after every reduction tile (by default left in
    the tensor cores' FP8 accumulator, as the module docstring says)."""
    samples, channels_in, height, width = x.shape
    channels_out = weight.shape[0]
    out = torch.empty(
        (samples, channels_out, height, width), dtype=out_dtype, device=x.device, memory_format=torch.channels_last
    )
    rows = samples * height * width
    tile_k = block_k(channels_in)
    if tile_k is None:
        raise ValueError(f"{channels_in} input channels: the FP8 convolution needs a multiple of 32.")
    if not rows:
        return out
    has_bias = bias is not None
    bias_arg = bias if bias is not None else weight_scale  # never read without HAS_BIAS
    grid = (triton.cdiv(rows, BLOCK_M) * triton.cdiv(channels_out, BLOCK_N),)
    _conv3x3_float8[grid](
        x, weight, weight_scale, input_scale, bias_arg, out, rows, height, width, channels_in, channels_out,
        HAS_BIAS=has_bias, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=tile_k, GROUP_M=GROUP_M,
        PROMOTE=tile_k if precise else None, num_warps=WARPS, num_stages=STAGES,
    )  # fmt: skip
    return out
