"""Triton kernels behind ``pipeline.diffusion.token_layout``: NCHW activations to a transformer's tokens and back,
through tiles, with the group norm of the transformer's entry or the residual add of its exit on the way.

A program takes a tile of ``TILE_CHANNELS`` channels by ``TILE_PIXELS`` pixels of one sample: it reads the tile along
the layout it is read from (pixels in NCHW, channels in tokens) and writes it transposed along the other, so both
sides move whole sectors; an elementwise copy of a permuted tensor reads or writes one element in each. A profile
sorts ``_group_norm_nchw_to_tokens`` among the norms (also where it only moves the data: the exit's backward) and
``_tokens_to_nchw`` among the layout conversions (``bench.profiling``).
(Triton reads a kernel's annotations and takes only ``tl.constexpr`` there: see ``group_norm_kernel``.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

from pipeline.diffusion.group_norm_kernel import BLOCK, PARTIALS, WARPS, _group_norm_merge_moments
from pipeline.diffusion.group_norm_kernel import _group_norm_nchw_moments as _moments

__all__ = ["TILE_CHANNELS", "TILE_PIXELS", "group_norm_to_tokens", "nchw_to_tokens", "tokens_to_nchw"]

TILE_CHANNELS = 64
TILE_PIXELS = 64


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _tile(channels, pixels, tile_channels: tl.constexpr, tile_pixels: tl.constexpr):  # type: ignore[no-untyped-def]
    """This program's sample's offset, its tile's channels and pixels, and which of them exist."""
    sample = tl.program_id(0).to(tl.int64)
    channel = tl.program_id(2) * tile_channels + tl.arange(0, tile_channels)
    pixel = tl.program_id(1) * tile_pixels + tl.arange(0, tile_pixels)
    return sample * channels * pixels, sample, channel, pixel, channel < channels, pixel < pixels


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nchw_to_tokens(  # type: ignore[no-untyped-def]
    x, out, weight, bias, mean, rstd, channels, pixels, per_group, groups,
    tile_channels: tl.constexpr, tile_pixels: tl.constexpr, normalize: tl.constexpr,
):  # fmt: skip
    """``out[n, p, c] = x[n, c, p]``, normalized (``normalize``) by the (sample, group)'s moments and the affine."""
    base, sample, channel, pixel, has_channel, has_pixel = _tile(channels, pixels, tile_channels, tile_pixels)
    inside = has_channel[:, None] & has_pixel[None, :]
    tile = tl.load(x + base + channel[:, None] * pixels + pixel[None, :], mask=inside, other=0.0)
    if normalize:
        group = sample * groups + channel // per_group
        scale = tl.load(rstd + group, mask=has_channel, other=0.0) * tl.load(
            weight + channel, mask=has_channel, other=0.0
        ).to(tl.float32)
        shift = tl.load(bias + channel, mask=has_channel, other=0.0).to(tl.float32) - scale * tl.load(
            mean + group, mask=has_channel, other=0.0
        )
        tile = tile.to(tl.float32) * scale[:, None] + shift[:, None]
    tokens = tl.trans(tile.to(out.dtype.element_ty))
    tl.store(
        out + base + pixel[:, None] * channels + channel[None, :],
        tokens,
        mask=has_pixel[:, None] & has_channel[None, :],
    )


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _tokens_to_nchw(  # type: ignore[no-untyped-def]
    tokens, residual, out, channels, pixels,
    tile_channels: tl.constexpr, tile_pixels: tl.constexpr, add: tl.constexpr,
):  # fmt: skip
    """``out[n, c, p] = tokens[n, p, c]``, plus ``residual[n, c, p]`` where ``add`` (in float32, rounded once)."""
    base, _sample, channel, pixel, has_channel, has_pixel = _tile(channels, pixels, tile_channels, tile_pixels)
    read = tl.load(
        tokens + base + pixel[:, None] * channels + channel[None, :],
        mask=has_pixel[:, None] & has_channel[None, :],
        other=0.0,
    )
    inside = has_channel[:, None] & has_pixel[None, :]
    nchw = channel[:, None] * pixels + pixel[None, :]
    tile = tl.trans(read)
    if add:
        tile = tile.to(tl.float32) + tl.load(residual + base + nchw, mask=inside, other=0.0).to(tl.float32)
    tl.store(out + base + nchw, tile.to(out.dtype.element_ty), mask=inside)


def _grid(samples: int, channels: int, pixels: int) -> tuple[int, int, int]:
    return samples, triton.cdiv(pixels, TILE_PIXELS), triton.cdiv(channels, TILE_CHANNELS)


def group_norm_to_tokens(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``headshot::group_norm_tokens`` on CUDA tensors: (the group norm of NCHW-contiguous ``x`` as (N, H*W, C)
    tokens, mean, rstd): ``group_norm_kernel``'s moments, then one tiled pass that normalizes and transposes."""
    samples, channels = x.shape[:2]
    pixels = x.shape[2] * x.shape[3]
    out = x.new_empty((samples, pixels, channels))
    mean = x.new_empty((samples, groups), dtype=torch.float32)
    rstd = torch.empty_like(mean)
    if not x.numel():
        return out, mean.fill_(float("nan")), rstd.fill_(float("nan"))
    per_group, chunks, rows = channels // groups, triton.cdiv(pixels, BLOCK), samples * channels
    means = x.new_empty((rows, chunks), dtype=torch.float32)
    deviations = torch.empty_like(means)
    _moments[(rows, chunks)](x, x, means, deviations, pixels, chunks, block=BLOCK, shifted=False, num_warps=WARPS)
    _group_norm_merge_moments[(mean.numel(),)](
        means, deviations, mean, rstd, per_group * chunks, pixels, chunks, eps, block=BLOCK, width=PARTIALS
    )
    _group_norm_nchw_to_tokens[_grid(samples, channels, pixels)](
        x, out, weight, bias, mean, rstd, channels, pixels, per_group, groups,
        tile_channels=TILE_CHANNELS, tile_pixels=TILE_PIXELS, normalize=True, num_warps=WARPS,
    )  # fmt: skip
    return out, mean, rstd


def nchw_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``headshot::nchw_to_tokens`` on CUDA tensors: NCHW-contiguous ``x`` as (N, H*W, C) tokens."""
    samples, channels = x.shape[:2]
    pixels = x.shape[2] * x.shape[3]
    out = x.new_empty((samples, pixels, channels))
    if x.numel():
        _group_norm_nchw_to_tokens[_grid(samples, channels, pixels)](
            x, out, x, x, x, x, channels, pixels, 1, 1,
            tile_channels=TILE_CHANNELS, tile_pixels=TILE_PIXELS, normalize=False, num_warps=WARPS,
        )  # fmt: skip
    return out


def tokens_to_nchw(tokens: torch.Tensor, residual: torch.Tensor | None, height: int, width: int) -> torch.Tensor:
    """``headshot::tokens_to_nchw`` on CUDA tensors: contiguous (N, H*W, C) ``tokens`` as an NCHW tensor, plus
    ``residual`` (NCHW-contiguous) where given."""
    samples, pixels, channels = tokens.shape
    out = tokens.new_empty((samples, channels, height, width))
    if tokens.numel():
        _tokens_to_nchw[_grid(samples, channels, pixels)](
            tokens, tokens if residual is None else residual, out, channels, pixels,
            tile_channels=TILE_CHANNELS, tile_pixels=TILE_PIXELS, add=residual is not None, num_warps=WARPS,
        )  # fmt: skip
    return out
