"""Triton kernels behind ``headshot::group_norm`` and its backward on CUDA for channels-last (NHWC) tensors.

The ``unet`` and ``regions`` scopes lay the UNet out channels-last, where cuDNN's convolutions need no transposes,
but torch's eager group norm copies such an input to NCHW and back, and inductor's compiled one clones it into
groups; both measured slower than torch's NCHW norm (BENCHMARKS.md, 2026-12-03 and 2026-12-04 fifth session).
Here each program takes a tile of ``TILE_PIXELS`` pixels by ``TILE_CHANNELS`` channels, each pixel's channels
contiguous in memory, and reduces over the pixels per channel: the per-channel partial moments then have the NCHW
kernels' layout (sample, channel, chunk), so the same combining kernels (``group_norm_kernel``) merge them into each
group's moments and gradient sums. A moments program covers ``CHUNK_TILES`` tiles, so a megapixel's channels need
fewer partial results, summing each value's distance from a shift (the chunk's first pixel) and its square element
by element and reducing them over the pixels once; the partial results then merge as Chan et al. do.
(Annotations as in ``group_norm_kernel``: only ``tl.constexpr``.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

from pipeline.diffusion.group_norm_kernel import _group_norm_merge_moments, _group_norm_merge_sums

__all__ = ["CHUNK_TILES", "TILE_CHANNELS", "TILE_PIXELS", "group_norm_backward_nhwc", "group_norm_forward_nhwc"]

TILE_PIXELS = 64  # pixels of a tile
TILE_CHANNELS = 64  # channels of a tile: SDXL's and its VAE's channel counts are multiples of 64
CHUNK_TILES = 8  # tiles a partial result covers
PARTIALS = 512  # partial results a combining program reads at once
WARPS = 8  # 16 values a thread: at 4, the input gradient held 32 in 191 registers, 8 warps resident an SM


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _sample_and_channels(tile_channels: tl.constexpr):  # type: ignore[no-untyped-def]
    """This program's sample (the grid's second axis) and its tile of channels (the third)."""
    return tl.program_id(1).to(tl.int64), tl.program_id(2) * tile_channels + tl.arange(0, tile_channels)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _tile(x, pixels, channels, first_pixel, tile_pixels: tl.constexpr, tile_channels: tl.constexpr):  # type: ignore[no-untyped-def]
    """The tile from ``first_pixel`` of this program's sample and channels: sample, channels, offsets, mask and values
    in float32."""
    sample, channel = _sample_and_channels(tile_channels)
    pixel = first_pixel + tl.arange(0, tile_pixels)
    inside = (pixel[:, None] < pixels) & (channel[None, :] < channels)
    offset = (sample * pixels + pixel[:, None]) * channels + channel[None, :]
    return sample, channel, offset, inside, tl.load(x + offset, mask=inside, other=0.0).to(tl.float32)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _chunk(tile_pixels: tl.constexpr, tile_channels: tl.constexpr, tiles: tl.constexpr):  # type: ignore[no-untyped-def]
    """This partial program's sample, chunk, channels and first pixel (a chunk is ``tiles`` tiles of pixels)."""
    chunk = tl.program_id(0)
    sample, channel = _sample_and_channels(tile_channels)
    return sample, chunk, channel, chunk.to(tl.int64) * (tile_pixels * tiles)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nhwc_moments(  # type: ignore[no-untyped-def]
    x,
    means,
    deviations,
    pixels,
    channels,
    chunks,
    tile_pixels: tl.constexpr,
    tile_channels: tl.constexpr,
    tiles: tl.constexpr,
):
    sample, chunk, channel, start = _chunk(tile_pixels, tile_channels, tiles)
    keep = channel < channels
    # Sums of each value's distance from a shift near the values (the chunk's first pixel), kept per element and
    # reduced over the pixels once at the end: the loop is loads and adds only, where merging every tile's moments
    # (Chan et al.) put two reductions across the program's threads in each of its iterations.
    shift = tl.load(x + (sample * pixels + start) * channels + channel, mask=keep, other=0.0).to(tl.float32)
    sums = tl.zeros([tile_pixels, tile_channels], dtype=tl.float32)
    squares = tl.zeros([tile_pixels, tile_channels], dtype=tl.float32)
    for tile in range(tiles):
        _, _, _, inside, value = _tile(x, pixels, channels, start + tile * tile_pixels, tile_pixels, tile_channels)
        apart = tl.where(inside, value - shift[None, :], 0.0)
        sums += apart
        squares += apart * apart
    count = tl.minimum(pixels - start, tile_pixels * tiles).to(tl.float32)  # a chunk starts inside the channel
    total = tl.sum(sums, axis=0)
    mean = total / count
    row = sample * channels + channel
    tl.store(means + row * chunks + chunk, shift + mean, mask=keep)
    # The squared deviations from the chunk's mean: float32 rounding of the two sums never makes them negative.
    tl.store(deviations + row * chunks + chunk, tl.maximum(tl.sum(squares, axis=0) - total * mean, 0.0), mask=keep)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_stats(sample, channel, mean, rstd, channels, per_group, groups):  # type: ignore[no-untyped-def]
    """Which of the tile's channels exist, and each one's group (index into the (N, groups) statistics), group mean
    and 1/sqrt(var + eps) (0 past the last channel)."""
    keep = channel < channels
    group = sample * groups + channel // per_group
    return keep, group, tl.load(mean + group, mask=keep, other=0.0), tl.load(rstd + group, mask=keep, other=0.0)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _normalized_with_gradient(  # type: ignore[no-untyped-def]
    x, grad, pixels, channels, first_pixel, scale, group_mean, group_rstd, tile_pixels: tl.constexpr,
    tile_channels: tl.constexpr,
):  # fmt: skip
    """The tile from ``first_pixel``: offsets, mask, each value normalized, and the normalized value's gradient (the
    output's times the channel's ``scale``, its weight), in float32."""
    _, _, offset, inside, value = _tile(x, pixels, channels, first_pixel, tile_pixels, tile_channels)
    upstream = tl.load(grad + offset, mask=inside, other=0.0).to(tl.float32)
    normalized = (value - group_mean[None, :]) * group_rstd[None, :]
    return offset, inside, normalized, upstream * scale[None, :]


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nhwc_normalize(  # type: ignore[no-untyped-def]
    x,
    out,
    weight,
    bias,
    mean,
    rstd,
    pixels,
    channels,
    per_group,
    groups,
    tile_pixels: tl.constexpr,
    tile_channels: tl.constexpr,
):
    first = tl.program_id(0).to(tl.int64) * tile_pixels
    sample, channel, offset, inside, value = _tile(x, pixels, channels, first, tile_pixels, tile_channels)
    keep, group, group_mean, group_rstd = _group_stats(sample, channel, mean, rstd, channels, per_group, groups)
    scale = group_rstd * tl.load(weight + channel, mask=keep, other=0.0).to(tl.float32)
    shift = tl.load(bias + channel, mask=keep, other=0.0).to(tl.float32) - group_mean * scale
    tl.store(out + offset, (value * scale[None, :] + shift[None, :]).to(out.dtype.element_ty), mask=inside)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nhwc_gradient_sums(  # type: ignore[no-untyped-def]
    x,
    grad,
    weight,
    mean,
    rstd,
    sums,
    products,
    pixels,
    channels,
    chunks,
    per_group,
    groups,
    tile_pixels: tl.constexpr,
    tile_channels: tl.constexpr,
    tiles: tl.constexpr,
):
    """Per channel and chunk: the sums of the normalized value's gradient and of that gradient times the value."""
    sample, chunk, channel, start = _chunk(tile_pixels, tile_channels, tiles)
    keep, group, group_mean, group_rstd = _group_stats(sample, channel, mean, rstd, channels, per_group, groups)
    scale = tl.load(weight + channel, mask=keep, other=0.0).to(tl.float32)
    # Per element across the tiles, reduced over the pixels once at the end (as the moments are).
    summed = tl.zeros([tile_pixels, tile_channels], dtype=tl.float32)
    multiplied = tl.zeros([tile_pixels, tile_channels], dtype=tl.float32)
    for tile in range(tiles):
        _, inside, normalized, normalized_grad = _normalized_with_gradient(
            x, grad, pixels, channels, start + tile * tile_pixels, scale, group_mean, group_rstd, tile_pixels,
            tile_channels,
        )  # fmt: skip
        summed += normalized_grad
        multiplied += tl.where(inside, normalized_grad * normalized, 0.0)
    row = sample * channels + channel
    tl.store(sums + row * chunks + chunk, tl.sum(summed, axis=0), mask=keep)
    tl.store(products + row * chunks + chunk, tl.sum(multiplied, axis=0), mask=keep)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nhwc_input_gradient(  # type: ignore[no-untyped-def]
    x,
    grad,
    out,
    weight,
    mean,
    rstd,
    sum_in,
    product_in,
    pixels,
    channels,
    per_group,
    groups,
    size,
    tile_pixels: tl.constexpr,
    tile_channels: tl.constexpr,
):
    sample, channel = _sample_and_channels(tile_channels)
    keep, group, group_mean, inverse = _group_stats(sample, channel, mean, rstd, channels, per_group, groups)
    scale = tl.load(weight + channel, mask=keep, other=0.0).to(tl.float32)
    offset, inside, normalized, normalized_grad = _normalized_with_gradient(
        x, grad, pixels, channels, tl.program_id(0).to(tl.int64) * tile_pixels, scale, group_mean, inverse,
        tile_pixels, tile_channels,
    )  # fmt: skip
    mean_grad = tl.load(sum_in + group, mask=keep, other=0.0) / size
    mean_product = tl.load(product_in + group, mask=keep, other=0.0) / size
    result = inverse[None, :] * (normalized_grad - mean_grad[None, :] - normalized * mean_product[None, :])
    tl.store(out + offset, result.to(out.dtype.element_ty), mask=inside)


def _layout(x: torch.Tensor, groups: int) -> tuple[int, int, int, int]:
    """(pixels, channels, channels per group, chunks) of a channels-last ``x``."""
    channels = x.shape[1]
    pixels = x[0, 0].numel()
    return pixels, channels, channels // groups, triton.cdiv(pixels, TILE_PIXELS * CHUNK_TILES)


def _grid(x: torch.Tensor, steps: int) -> tuple[int, int, int]:
    """(``steps`` along the pixels, samples, tiles across the channels): the pixels on the grid's first axis, the only
    one not limited to 65,535 programs (an upscale's encode has 4.3 million pixels, 67 thousand tiles of 64)."""
    return steps, x.shape[0], triton.cdiv(x.shape[1], TILE_CHANNELS)


def group_norm_forward_nhwc(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``headshot::group_norm`` on a channels-last CUDA tensor: (output, channels-last, and mean and rstd, float32 of
    shape (N, groups))."""
    x = x.contiguous(memory_format=torch.channels_last)
    pixels, channels, per_group, chunks = _layout(x, groups)
    out = torch.empty_like(x, memory_format=torch.channels_last)
    mean = x.new_empty((x.shape[0], groups), dtype=torch.float32)
    rstd = torch.empty_like(mean)
    if not x.numel():
        return out, mean.fill_(float("nan")), rstd.fill_(float("nan"))
    means = x.new_empty((x.shape[0] * channels, chunks), dtype=torch.float32)
    deviations = torch.empty_like(means)
    tiles = {"tile_pixels": TILE_PIXELS, "tile_channels": TILE_CHANNELS}
    _group_norm_nhwc_moments[_grid(x, chunks)](
        x, means, deviations, pixels, channels, chunks, **tiles, tiles=CHUNK_TILES, num_warps=WARPS
    )
    chunk = TILE_PIXELS * CHUNK_TILES
    _group_norm_merge_moments[(mean.numel(),)](
        means, deviations, mean, rstd, per_group * chunks, pixels, chunks, eps, block=chunk, width=PARTIALS
    )
    _group_norm_nhwc_normalize[_grid(x, triton.cdiv(pixels, TILE_PIXELS))](
        x, out, weight, bias, mean, rstd, pixels, channels, per_group, groups, **tiles, num_warps=WARPS
    )
    return out, mean, rstd


def group_norm_backward_nhwc(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, groups: int
) -> torch.Tensor:
    """``headshot::group_norm_backward`` on channels-last CUDA tensors: the gradient with respect to ``x``,
    channels-last."""
    x = x.contiguous(memory_format=torch.channels_last)
    grad = grad.contiguous(memory_format=torch.channels_last)
    pixels, channels, per_group, chunks = _layout(x, groups)
    out = torch.empty_like(x, memory_format=torch.channels_last)
    if not x.numel():
        return out
    sums = x.new_empty((x.shape[0] * channels, chunks), dtype=torch.float32)
    products = torch.empty_like(sums)
    tiles = {"tile_pixels": TILE_PIXELS, "tile_channels": TILE_CHANNELS}
    _group_norm_nhwc_gradient_sums[_grid(x, chunks)](
        x, grad, weight, mean, rstd, sums, products, pixels, channels, chunks, per_group, groups, **tiles,
        tiles=CHUNK_TILES, num_warps=WARPS,
    )  # fmt: skip
    sum_out = torch.empty_like(mean)
    product_out = torch.empty_like(mean)
    _group_norm_merge_sums[(mean.numel(),)](sums, products, sum_out, product_out, per_group * chunks, width=PARTIALS)
    _group_norm_nhwc_input_gradient[_grid(x, triton.cdiv(pixels, TILE_PIXELS))](
        x, grad, out, weight, mean, rstd, sum_out, product_out, pixels, channels, per_group, groups,
        per_group * pixels, **tiles, num_warps=WARPS,
    )  # fmt: skip
    return out
