"""Triton kernels behind ``headshot::group_norm`` and its backward on CUDA (``pipeline.diffusion.group_norm`` says
why).

Every kernel but the combining ones takes one channel's ``BLOCK`` contiguous pixels of an NCHW tensor, so each
program has one mean, one ``rstd``, one weight and one bias, and no element divides by anything. The moments of a
group come from every chunk of its channels (count, mean and squared deviations each, merged exactly as in Chan et
al.'s parallel variance), so a group of 167 thousand values is reduced by ~80 programs at once instead of by one.
Each kernel is named ``_group_norm_...``: a profile lists kernels by function name, and ``bench.profiling`` sorts a
name with "norm" in it among the norms. (Triton reads a kernel's annotations, and takes only ``tl.constexpr`` there:
the pointers and sizes go unannotated, and no ``from __future__ import annotations`` turns the annotations into names
to look up.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "BLOCK",
    "group_norm_act_backward_nchw",
    "group_norm_act_nchw",
    "group_norm_backward_nchw",
    "group_norm_forward_nchw",
]

BLOCK = 2048  # pixels of one channel a program takes
PARTIALS = 512  # partial results a combining program reads at once
WARPS = 4


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _chunk(x, pixels, block: tl.constexpr):  # type: ignore[no-untyped-def]
    """This program's channel (row of ``x``), chunk, offsets in ``x``, mask and values in float32."""
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    column = chunk * block + tl.arange(0, block)
    inside = column < pixels
    offset = row * pixels + column
    return row, chunk, offset, inside, tl.load(x + offset, mask=inside, other=0.0).to(tl.float32)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _shifted(value, inside, shift, row, shifted: tl.constexpr):  # type: ignore[no-untyped-def]
    """``value`` plus this row's (sample's channel's) ``shift`` where ``shifted``, zero outside the tensor."""
    if shifted:
        value = tl.where(inside, value + tl.load(shift + row).to(tl.float32), 0.0)
    return value


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nchw_moments(  # type: ignore[no-untyped-def]
    x, shift, means, deviations, pixels, chunks, block: tl.constexpr, shifted: tl.constexpr
):
    row, chunk, offset, inside, value = _chunk(x, pixels, block)
    value = _shifted(value, inside, shift, row, shifted)
    count = tl.minimum(pixels - chunk * block, block).to(tl.float32)
    mean = tl.sum(value, axis=0) / count
    centred = tl.where(inside, value - mean, 0.0)
    tl.store(means + row * chunks + chunk, mean)
    tl.store(deviations + row * chunks + chunk, tl.sum(centred * centred, axis=0))


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _window(start, partials, pixels, chunks, block: tl.constexpr, width: tl.constexpr):  # type: ignore[no-untyped-def]
    """``width`` of a group's partial results from ``start``: their indices, which exist, and how many values each
    holds (a channel's last chunk is short)."""
    index = start + tl.arange(0, width)
    inside = index < partials
    return index, inside, tl.where(inside, tl.minimum(pixels - (index % chunks) * block, block), 0).to(tl.float32)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_merge_moments(  # type: ignore[no-untyped-def]
    means, deviations, mean_out, rstd_out, partials, pixels, chunks, eps, block: tl.constexpr, width: tl.constexpr
):
    """One group's mean and 1/sqrt(var + eps) from its ``partials`` chunks' (mean, squared deviations)."""
    group = tl.program_id(0).to(tl.int64)
    base = group * partials
    weighted = tl.zeros([width], dtype=tl.float32)
    counted = tl.zeros([width], dtype=tl.float32)
    for start in range(0, partials, width):
        index, inside, count = _window(start, partials, pixels, chunks, block, width)
        weighted += count * tl.load(means + base + index, mask=inside, other=0.0)
        counted += count
    total = tl.sum(counted, axis=0)
    mean = tl.sum(weighted, axis=0) / total
    squares = tl.zeros([width], dtype=tl.float32)
    for start in range(0, partials, width):
        index, inside, count = _window(start, partials, pixels, chunks, block, width)
        apart = tl.load(means + base + index, mask=inside, other=0.0) - mean
        squares += tl.load(deviations + base + index, mask=inside, other=0.0) + count * apart * apart
    tl.store(mean_out + group, mean)
    tl.store(rstd_out + group, 1.0 / tl.sqrt(tl.sum(squares, axis=0) / total + eps))


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nchw_normalize(  # type: ignore[no-untyped-def]
    x, shift, out, weight, bias, mean, rstd, pixels, channels, per_group,
    block: tl.constexpr, shifted: tl.constexpr, silu: tl.constexpr,
):  # fmt: skip
    row, chunk, offset, inside, value = _chunk(x, pixels, block)
    value = _shifted(value, inside, shift, row, shifted)
    channel = row % channels
    group = row // per_group
    scale = tl.load(rstd + group) * tl.load(weight + channel).to(tl.float32)
    offset_value = tl.load(bias + channel).to(tl.float32) - tl.load(mean + group) * scale
    result = value * scale + offset_value
    if silu:
        result = result / (1.0 + tl.exp(-result))
    tl.store(out + offset, result.to(out.dtype.element_ty), mask=inside)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _normalized_gradient(  # type: ignore[no-untyped-def]
    grad, x, shift, weight, bias, mean, rstd, pixels, per_group, channels, block: tl.constexpr,
    shifted: tl.constexpr, silu: tl.constexpr,
):  # fmt: skip
    """This program's chunk: offsets, mask, its group, the normalized values and their gradient (the output's times
    the weight; through the SiLU first where ``silu``, its input recomputed from the normalized values)."""
    row, chunk, offset, inside, value = _chunk(x, pixels, block)
    value = _shifted(value, inside, shift, row, shifted)
    group = row // per_group
    normalized = (value - tl.load(mean + group)) * tl.load(rstd + group)
    scale = tl.load(weight + row % channels).to(tl.float32)
    upstream = tl.load(grad + offset, mask=inside, other=0.0).to(tl.float32)
    if silu:
        activated = normalized * scale + tl.load(bias + row % channels).to(tl.float32)
        sigmoid = 1.0 / (1.0 + tl.exp(-activated))
        upstream = upstream * sigmoid * (1.0 + activated * (1.0 - sigmoid))
    return row, chunk, offset, inside, group, normalized, upstream * scale


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nchw_gradient_sums(  # type: ignore[no-untyped-def]
    x, shift, grad, weight, bias, mean, rstd, sums, products, pixels, chunks, per_group, channels,
    block: tl.constexpr, shifted: tl.constexpr, silu: tl.constexpr,
):  # fmt: skip
    """Per chunk: the sums of the normalized value's gradient and of that gradient times the normalized value."""
    row, chunk, offset, inside, group, normalized, normalized_grad = _normalized_gradient(
        grad, x, shift, weight, bias, mean, rstd, pixels, per_group, channels, block, shifted, silu
    )
    tl.store(sums + row * chunks + chunk, tl.sum(normalized_grad, axis=0))
    tl.store(products + row * chunks + chunk, tl.sum(tl.where(inside, normalized_grad * normalized, 0.0), axis=0))


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_merge_sums(sums, products, sum_out, product_out, partials, width: tl.constexpr):  # type: ignore[no-untyped-def]
    group = tl.program_id(0).to(tl.int64)
    base = group * partials
    summed = tl.zeros([width], dtype=tl.float32)
    multiplied = tl.zeros([width], dtype=tl.float32)
    for start in range(0, partials, width):
        index = start + tl.arange(0, width)
        inside = index < partials
        summed += tl.load(sums + base + index, mask=inside, other=0.0)
        multiplied += tl.load(products + base + index, mask=inside, other=0.0)
    tl.store(sum_out + group, tl.sum(summed, axis=0))
    tl.store(product_out + group, tl.sum(multiplied, axis=0))


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _group_norm_nchw_input_gradient(  # type: ignore[no-untyped-def]
    x, shift, grad, out, weight, bias, mean, rstd, sum_in, product_in, pixels, per_group, channels, size,
    block: tl.constexpr, shifted: tl.constexpr, silu: tl.constexpr,
):  # fmt: skip
    row, chunk, offset, inside, group, normalized, normalized_grad = _normalized_gradient(
        grad, x, shift, weight, bias, mean, rstd, pixels, per_group, channels, block, shifted, silu
    )
    mean_grad = tl.load(sum_in + group) / size
    mean_product = tl.load(product_in + group) / size
    result = tl.load(rstd + group) * (normalized_grad - mean_grad - normalized * mean_product)
    tl.store(out + offset, result.to(out.dtype.element_ty), mask=inside)


def _layout(x: torch.Tensor, groups: int) -> tuple[int, int, int, int, int]:
    """(rows, pixels, chunks, channels, channels per group) of an NCHW-contiguous ``x``."""
    channels = x.shape[1]
    pixels = x[0, 0].numel()
    return x.shape[0] * channels, pixels, triton.cdiv(pixels, BLOCK), channels, channels // groups


def group_norm_forward_nchw(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``headshot::group_norm`` on CUDA tensors: (output, mean, rstd), the last two float32 of shape (N, groups)."""
    return _forward(x, None, weight, bias, groups, eps, silu=False)


def group_norm_act_nchw(
    x: torch.Tensor, shift: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``headshot::group_norm_silu`` on CUDA tensors: (SiLU of the norm of ``x`` plus ``shift`` (N, C) per sample and
    channel, when given, mean, rstd), the add and the SiLU inside the plain norm's two passes over ``x``: no pass of
    their own."""
    return _forward(x, shift, weight, bias, groups, eps, silu=True)


def _forward(
    x: torch.Tensor,
    shift: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    groups: int,
    eps: float,
    *,
    silu: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.contiguous()
    rows, pixels, chunks, channels, per_group = _layout(x, groups)
    out = torch.empty_like(x)
    mean = x.new_empty((x.shape[0], groups), dtype=torch.float32)
    rstd = torch.empty_like(mean)
    if not x.numel():
        return out, mean.fill_(float("nan")), rstd.fill_(float("nan"))
    shifted = shift is not None
    shift = x if shift is None else shift.contiguous()  # an address the kernels never read when not shifted
    means = x.new_empty((rows, chunks), dtype=torch.float32)
    deviations = torch.empty_like(means)
    _group_norm_nchw_moments[(rows, chunks)](
        x, shift, means, deviations, pixels, chunks, block=BLOCK, shifted=shifted, num_warps=WARPS
    )
    _group_norm_merge_moments[(mean.numel(),)](
        means, deviations, mean, rstd, per_group * chunks, pixels, chunks, eps, block=BLOCK, width=PARTIALS
    )
    _group_norm_nchw_normalize[(rows, chunks)](
        x, shift, out, weight, bias, mean, rstd, pixels, channels, per_group,
        block=BLOCK, shifted=shifted, silu=silu, num_warps=WARPS,
    )  # fmt: skip
    return out, mean, rstd


def group_norm_backward_nchw(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, groups: int
) -> torch.Tensor:
    """``headshot::group_norm_backward`` on CUDA tensors: the gradient with respect to ``x``."""
    return group_norm_act_backward_nchw(grad, x, None, weight, weight, mean, rstd, groups, silu=False)  # no bias read


def group_norm_act_backward_nchw(
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
    """``headshot::group_norm_silu_backward`` on CUDA tensors (``silu``; else the plain norm's backward, ``shift``
    None): the gradient with respect to ``x`` (and to ``x + shift``), the SiLU's input recomputed inside the plain
    backward's two passes: neither it nor the shifted input is kept between the forward and the backward."""
    x, grad = x.contiguous(), grad.contiguous()
    rows, pixels, chunks, channels, per_group = _layout(x, groups)
    out = torch.empty_like(x)
    if not x.numel():
        return out
    shifted = shift is not None
    shift = x if shift is None else shift.contiguous()  # an address the kernels never read when not shifted
    sums = x.new_empty((rows, chunks), dtype=torch.float32)
    products = torch.empty_like(sums)
    _group_norm_nchw_gradient_sums[(rows, chunks)](
        x, shift, grad, weight, bias, mean, rstd, sums, products, pixels, chunks, per_group, channels,
        block=BLOCK, shifted=shifted, silu=silu, num_warps=WARPS,
    )  # fmt: skip
    sum_out = torch.empty_like(mean)
    product_out = torch.empty_like(mean)
    _group_norm_merge_sums[(mean.numel(),)](sums, products, sum_out, product_out, per_group * chunks, width=PARTIALS)
    _group_norm_nchw_input_gradient[(rows, chunks)](
        x, shift, grad, out, weight, bias, mean, rstd, sum_out, product_out, pixels, per_group, channels,
        per_group * pixels, block=BLOCK, shifted=shifted, silu=silu, num_warps=WARPS,
    )  # fmt: skip
    return out
