"""Triton kernels behind ``headshot::group_norm`` and ``headshot::group_norm_silu`` and their backwards on CUDA for
channels-last (NHWC) tensors.

The ``unet`` and ``regions`` scopes lay the UNet out channels-last, where cuDNN's convolutions need no transposes,
but torch's eager group norm copies such an input to NCHW and back, and inductor's compiled one clones it into
groups; both measured slower than torch's NCHW norm (BENCHMARKS.md, 2026-12-03 and 2026-12-04 fifth session).
Here each program takes a tile of ``TILE_PIXELS`` pixels by ``TILE_CHANNELS`` channels, each pixel's channels
contiguous in memory, and reduces over the pixels per channel: the per-channel partial moments then have the NCHW
kernels' layout (sample, channel, chunk), so the same combining kernels (``group_norm_kernel``) merge them into each
group's moments and gradient sums. A moments program covers ``CHUNK_TILES`` tiles, so a megapixel's channels need
fewer partial results, summing each value's distance from a shift (the chunk's first pixel) and its square element
by element and reducing them over the pixels once; the partial results then merge as Chan et al. do. As in
``group_norm_kernel``, ``shifted`` adds a ResNet block's time embedding (one value a sample's channel) to each value
as it is read, and ``silu`` applies the SiLU after the norm (its derivative before the backward's sums).
(Annotations as in ``group_norm_kernel``: only ``tl.constexpr``.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

from pipeline.diffusion.group_norm_kernel import _group_norm_merge_moments, _group_norm_merge_sums

__all__ = [
    "CHUNK_TILES",
    "TILE_CHANNELS",
    "TILE_PIXELS",
    "group_norm_act_backward_nhwc",
    "group_norm_act_nhwc",
    "group_norm_backward_nhwc",
    "group_norm_forward_nhwc",
    "group_norm_silu_float8_nhwc",
]

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
def _added(shift, sample, channel, channels, shifted: tl.constexpr):  # type: ignore[no-untyped-def]
    """What each of this program's channels adds to its values: the sample's ``shift`` where ``shifted``, else 0."""
    if shifted:
        return tl.load(shift + sample * channels + channel, mask=channel < channels, other=0.0).to(tl.float32)
    return tl.zeros_like(channel).to(tl.float32)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _tile(  # type: ignore[no-untyped-def]
    x, added, pixels, channels, first_pixel, tile_pixels: tl.constexpr, tile_channels: tl.constexpr,
    shifted: tl.constexpr,
):  # fmt: skip
    """The tile from ``first_pixel`` of this program's sample and channels: sample, channels, offsets, mask and values
    (plus their channel's ``added`` where ``shifted``, ``_added``) in float32, 0 outside the tensor."""
    sample, channel = _sample_and_channels(tile_channels)
    pixel = first_pixel + tl.arange(0, tile_pixels)
    inside = (pixel[:, None] < pixels) & (channel[None, :] < channels)
    offset = (sample * pixels + pixel[:, None]) * channels + channel[None, :]
    value = tl.load(x + offset, mask=inside, other=0.0).to(tl.float32)
    if shifted:
        value = tl.where(inside, value + added[None, :], 0.0)
    return sample, channel, offset, inside, value


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _chunk(tile_pixels: tl.constexpr, tile_channels: tl.constexpr, tiles: tl.constexpr):  # type: ignore[no-untyped-def]
    """This partial program's sample, chunk, channels and first pixel (a chunk is ``tiles`` tiles of pixels)."""
    chunk = tl.program_id(0)
    sample, channel = _sample_and_channels(tile_channels)
    return sample, chunk, channel, chunk.to(tl.int64) * (tile_pixels * tiles)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nhwc_moments(  # type: ignore[no-untyped-def]
    x,
    shift,
    means,
    deviations,
    pixels,
    channels,
    chunks,
    tile_pixels: tl.constexpr,
    tile_channels: tl.constexpr,
    tiles: tl.constexpr,
    shifted: tl.constexpr,
):
    sample, chunk, channel, start = _chunk(tile_pixels, tile_channels, tiles)
    keep = channel < channels
    added = _added(shift, sample, channel, channels, shifted)
    # Sums of each value's distance from a pivot near the values (the chunk's first pixel), kept per element and
    # reduced over the pixels once at the end: the loop is loads and adds only, where merging every tile's moments
    # (Chan et al.) put two reductions across the program's threads in each of its iterations.
    pivot = tl.load(x + (sample * pixels + start) * channels + channel, mask=keep, other=0.0).to(tl.float32)
    if shifted:
        pivot += added
    sums = tl.zeros([tile_pixels, tile_channels], dtype=tl.float32)
    squares = tl.zeros([tile_pixels, tile_channels], dtype=tl.float32)
    for tile in range(tiles):
        first = start + tile * tile_pixels
        _, _, _, inside, value = _tile(x, added, pixels, channels, first, tile_pixels, tile_channels, shifted)
        apart = tl.where(inside, value - pivot[None, :], 0.0)
        sums += apart
        squares += apart * apart
    count = tl.minimum(pixels - start, tile_pixels * tiles).to(tl.float32)  # a chunk starts inside the channel
    total = tl.sum(sums, axis=0)
    mean = total / count
    row = sample * channels + channel
    tl.store(means + row * chunks + chunk, pivot + mean, mask=keep)
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
    x, added, grad, pixels, channels, first_pixel, scale, offset_by, group_mean, group_rstd,
    tile_pixels: tl.constexpr, tile_channels: tl.constexpr, shifted: tl.constexpr, silu: tl.constexpr,
):  # fmt: skip
    """The tile from ``first_pixel``: offsets, mask, each value normalized, and the normalized value's gradient (the
    output's times the channel's ``scale``, its weight; through the SiLU first where ``silu``, its input recomputed
    as the normalized value times ``scale`` plus ``offset_by``, the bias), in float32."""
    _, _, offset, inside, value = _tile(x, added, pixels, channels, first_pixel, tile_pixels, tile_channels, shifted)
    upstream = tl.load(grad + offset, mask=inside, other=0.0).to(tl.float32)
    normalized = (value - group_mean[None, :]) * group_rstd[None, :]
    if silu:
        activated = normalized * scale[None, :] + offset_by[None, :]
        sigmoid = 1.0 / (1.0 + tl.exp(-activated))
        upstream = upstream * sigmoid * (1.0 + activated * (1.0 - sigmoid))
    return offset, inside, normalized, upstream * scale[None, :]


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nhwc_normalize(  # type: ignore[no-untyped-def]
    x,
    shift,
    out,
    weight,
    bias,
    mean,
    rstd,
    pixels,
    channels,
    per_group,
    groups,
    out_scale,
    tile_pixels: tl.constexpr,
    tile_channels: tl.constexpr,
    shifted: tl.constexpr,
    silu: tl.constexpr,
    quantize: tl.constexpr,
):
    """The normalized tile (with its SiLU where ``silu``); where ``quantize``, divided by ``out_scale`` and clipped
    to e4m3's range for an FP8 ``out`` (the input of ``headshot::conv3x3_float8``)."""
    first = tl.program_id(0).to(tl.int64) * tile_pixels
    sample, channel = _sample_and_channels(tile_channels)
    added = _added(shift, sample, channel, channels, shifted)
    _, _, offset, inside, value = _tile(x, added, pixels, channels, first, tile_pixels, tile_channels, shifted)
    keep, group, group_mean, group_rstd = _group_stats(sample, channel, mean, rstd, channels, per_group, groups)
    scale = group_rstd * tl.load(weight + channel, mask=keep, other=0.0).to(tl.float32)
    offset_by = tl.load(bias + channel, mask=keep, other=0.0).to(tl.float32) - group_mean * scale
    result = value * scale[None, :] + offset_by[None, :]
    if silu:
        result = result / (1.0 + tl.exp(-result))
    if quantize:
        result = tl.clamp(result / tl.load(out_scale), -448.0, 448.0)
    tl.store(out + offset, result.to(out.dtype.element_ty), mask=inside)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nhwc_gradient_sums(  # type: ignore[no-untyped-def]
    x,
    shift,
    grad,
    weight,
    bias,
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
    shifted: tl.constexpr,
    silu: tl.constexpr,
):
    """Per channel and chunk: the sums of the normalized value's gradient and of that gradient times the value."""
    sample, chunk, channel, start = _chunk(tile_pixels, tile_channels, tiles)
    keep, group, group_mean, group_rstd = _group_stats(sample, channel, mean, rstd, channels, per_group, groups)
    scale = tl.load(weight + channel, mask=keep, other=0.0).to(tl.float32)
    offset_by = tl.load(bias + channel, mask=keep, other=0.0).to(tl.float32) if silu else scale
    added = _added(shift, sample, channel, channels, shifted)
    # Per element across the tiles, reduced over the pixels once at the end (as the moments are).
    summed = tl.zeros([tile_pixels, tile_channels], dtype=tl.float32)
    multiplied = tl.zeros([tile_pixels, tile_channels], dtype=tl.float32)
    for tile in range(tiles):
        _, inside, normalized, normalized_grad = _normalized_with_gradient(
            x, added, grad, pixels, channels, start + tile * tile_pixels, scale, offset_by, group_mean, group_rstd,
            tile_pixels, tile_channels, shifted, silu,
        )  # fmt: skip
        summed += normalized_grad
        multiplied += tl.where(inside, normalized_grad * normalized, 0.0)
    row = sample * channels + channel
    tl.store(sums + row * chunks + chunk, tl.sum(summed, axis=0), mask=keep)
    tl.store(products + row * chunks + chunk, tl.sum(multiplied, axis=0), mask=keep)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nhwc_input_gradient(  # type: ignore[no-untyped-def]
    x,
    shift,
    grad,
    out,
    weight,
    bias,
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
    shifted: tl.constexpr,
    silu: tl.constexpr,
):
    sample, channel = _sample_and_channels(tile_channels)
    keep, group, group_mean, inverse = _group_stats(sample, channel, mean, rstd, channels, per_group, groups)
    scale = tl.load(weight + channel, mask=keep, other=0.0).to(tl.float32)
    offset_by = tl.load(bias + channel, mask=keep, other=0.0).to(tl.float32) if silu else scale
    added = _added(shift, sample, channel, channels, shifted)
    offset, inside, normalized, normalized_grad = _normalized_with_gradient(
        x, added, grad, pixels, channels, tl.program_id(0).to(tl.int64) * tile_pixels, scale, offset_by, group_mean,
        inverse, tile_pixels, tile_channels, shifted, silu,
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
    return _forward(x, None, weight, bias, groups, eps, silu=False)


def group_norm_act_nhwc(
    x: torch.Tensor, shift: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``headshot::group_norm_silu`` on a channels-last CUDA tensor: (SiLU of the norm of ``x`` plus ``shift`` (N, C)
    per sample and channel, channels-last, and that sum's mean and rstd, float32 of shape (N, groups))."""
    return _forward(x, shift, weight, bias, groups, eps, silu=True)


def group_norm_silu_float8_nhwc(
    x: torch.Tensor,
    shift: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    groups: int,
    eps: float,
    scale: torch.Tensor,
) -> torch.Tensor:
    """``headshot::group_norm_silu_float8`` on a channels-last CUDA tensor: ``group_norm_act_nhwc``'s output divided by
    ``scale`` in e4m3, channels-last."""
    return _forward(x, shift, weight, bias, groups, eps, silu=True, out_scale=scale)[0]


def _forward(
    x: torch.Tensor,
    shift: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    groups: int,
    eps: float,
    *,
    silu: bool,
    out_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.contiguous(memory_format=torch.channels_last)
    pixels, channels, per_group, chunks = _layout(x, groups)
    out_dtype = x.dtype if out_scale is None else torch.float8_e4m3fn
    out = torch.empty_like(x, dtype=out_dtype, memory_format=torch.channels_last)
    mean = x.new_empty((x.shape[0], groups), dtype=torch.float32)
    rstd = torch.empty_like(mean)
    if not x.numel():
        return out, mean.fill_(float("nan")), rstd.fill_(float("nan"))
    shifted = shift is not None
    shift = x if shift is None else shift.contiguous()  # an address the kernels never read when not shifted
    means = x.new_empty((x.shape[0] * channels, chunks), dtype=torch.float32)
    deviations = torch.empty_like(means)
    tiles = {"tile_pixels": TILE_PIXELS, "tile_channels": TILE_CHANNELS}
    _group_norm_nhwc_moments[_grid(x, chunks)](
        x, shift, means, deviations, pixels, channels, chunks, **tiles, tiles=CHUNK_TILES, shifted=shifted,
        num_warps=WARPS,
    )  # fmt: skip
    chunk = TILE_PIXELS * CHUNK_TILES
    _group_norm_merge_moments[(mean.numel(),)](
        means, deviations, mean, rstd, per_group * chunks, pixels, chunks, eps, block=chunk, width=PARTIALS
    )
    _group_norm_nhwc_normalize[_grid(x, triton.cdiv(pixels, TILE_PIXELS))](
        x, shift, out, weight, bias, mean, rstd, pixels, channels, per_group, groups,
        rstd if out_scale is None else out_scale,  # an address the kernel never reads when not quantizing
        **tiles, shifted=shifted, silu=silu, quantize=out_scale is not None, num_warps=WARPS,
    )  # fmt: skip
    return out, mean, rstd


def group_norm_backward_nhwc(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, groups: int
) -> torch.Tensor:
    """``headshot::group_norm_backward`` on channels-last CUDA tensors: the gradient with respect to ``x``,
    channels-last."""
    return group_norm_act_backward_nhwc(grad, x, None, weight, weight, mean, rstd, groups, silu=False)  # no bias read


def group_norm_act_backward_nhwc(
    grad: torch.Tensor,
    x: torch.Tensor,
    shift: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    groups: int,
    *,
    silu: bool = True,
) -> torch.Tensor:
    """``headshot::group_norm_silu_backward`` on channels-last CUDA tensors (``silu``; else the plain norm's backward,
    ``shift`` None): the gradient with respect to ``x`` (and to ``x + shift``), channels-last, the SiLU's input
    recomputed inside the plain backward's two passes."""
    x = x.contiguous(memory_format=torch.channels_last)
    grad = grad.contiguous(memory_format=torch.channels_last)
    pixels, channels, per_group, chunks = _layout(x, groups)
    out = torch.empty_like(x, memory_format=torch.channels_last)
    if not x.numel():
        return out
    shifted = shift is not None
    shift = x if shift is None else shift.contiguous()  # an address the kernels never read when not shifted
    sums = x.new_empty((x.shape[0] * channels, chunks), dtype=torch.float32)
    products = torch.empty_like(sums)
    tiles = {"tile_pixels": TILE_PIXELS, "tile_channels": TILE_CHANNELS}
    _group_norm_nhwc_gradient_sums[_grid(x, chunks)](
        x, shift, grad, weight, bias, mean, rstd, sums, products, pixels, channels, chunks, per_group, groups,
        **tiles, tiles=CHUNK_TILES, shifted=shifted, silu=silu, num_warps=WARPS,
    )  # fmt: skip
    sum_out = torch.empty_like(mean)
    product_out = torch.empty_like(mean)
    _group_norm_merge_sums[(mean.numel(),)](sums, products, sum_out, product_out, per_group * chunks, width=PARTIALS)
    _group_norm_nhwc_input_gradient[_grid(x, triton.cdiv(pixels, TILE_PIXELS))](
        x, shift, grad, out, weight, bias, mean, rstd, sum_out, product_out, pixels, channels, per_group, groups,
        per_group * pixels, **tiles, shifted=shifted, silu=silu, num_warps=WARPS,
    )  # fmt: skip
    return out
