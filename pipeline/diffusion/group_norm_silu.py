"""A ResNet block's norm, its SiLU and the time embedding's add as one operator, with its backward
(``headshot::group_norm_silu``, ``headshot::group_norm_silu_backward``; ``pipeline.diffusion.resnet_glue`` runs the
blocks through it; ``headshot::group_norm_silu_float8`` writes its output in FP8 for an FP8 convolution).

The forward is ``headshot::group_norm``'s two passes with the add and the SiLU inside them; the backward is its
backward's two passes with the SiLU's derivative inside, recomputing the shifted input and the SiLU's input from the
block's own input and the forward's moments, so neither is kept between the two. On CUDA, NCHW-contiguous tensors
run ``group_norm_kernel``'s Triton kernels and channels-last ones ``group_norm_nhwc_kernel``'s; elsewhere (a CPU,
another layout) the same maths run in float32 torch ops.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

from pipeline.diffusion.group_norm import (
    affine_norm,
    channels_last,
    group_norm_backward,
    memory_format_of,
    per_channel,
)

__all__ = ["group_norm_silu", "group_norm_silu_backward", "group_norm_silu_float8"]


@torch.library.custom_op("headshot::group_norm_silu", mutates_args=())
def group_norm_silu(
    x: torch.Tensor, shift: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``silu(functional.group_norm(x + shift, groups, weight, bias, eps))`` in ``x``'s dtype and layout, ``shift``
    (N, C) added to each sample's channel first (a ResNet block's time embedding), in float32, with each (sample,
    group)'s mean and 1/sqrt(var + eps) of ``x + shift`` (what the backward needs): a ResNet block's glue in one
    operator (``pipeline.diffusion.resnet_glue``). Elsewhere than an NCHW-contiguous or channels-last CUDA tensor
    (the Triton kernels), these torch maths."""
    if x.is_cuda and x.is_contiguous():
        from pipeline.diffusion.group_norm_kernel import group_norm_act_nchw

        return group_norm_act_nchw(x, shift, weight, bias, groups, eps)
    if x.is_cuda and channels_last(x):
        from pipeline.diffusion.group_norm_nhwc_kernel import group_norm_act_nhwc

        return group_norm_act_nhwc(x, shift, weight, bias, groups, eps)
    normed, mean, rstd = affine_norm(_shifted(x, shift), weight, bias, groups, eps)
    return functional.silu(normed).to(x.dtype).contiguous(memory_format=memory_format_of(x)), mean, rstd


def _shifted(x: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor:
    """``x + shift`` in float32, ``shift`` (N, C) broadcast over each channel's pixels."""
    value = x.float()
    return value if shift is None else value + shift.float().reshape(*shift.shape, *([1] * (x.dim() - 2)))


@group_norm_silu.register_fake
def _group_norm_silu_shapes(
    x: torch.Tensor, shift: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    stats = x.new_empty((x.shape[0], groups), dtype=torch.float32)
    return torch.empty_like(x, memory_format=memory_format_of(x)), stats, torch.empty_like(stats)


@torch.library.custom_op("headshot::group_norm_silu_float8", mutates_args=())
def group_norm_silu_float8(
    x: torch.Tensor,
    shift: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    groups: int,
    eps: float,
    scale: torch.Tensor,
) -> torch.Tensor:
    """``group_norm_silu``'s output divided by ``scale`` and clipped to e4m3's range, in e4m3 and ``x``'s layout: the
    input of ``headshot::conv3x3_float8`` written by the norm's own pass (``float8_conv``), for rendering (no
    gradient). A channels-last CUDA tensor runs the NHWC kernels; anything else these torch maths."""
    if x.is_cuda and channels_last(x):
        from pipeline.diffusion.group_norm_nhwc_kernel import group_norm_silu_float8_nhwc

        return group_norm_silu_float8_nhwc(x, shift, weight, bias, groups, eps, scale)
    normed, _mean, _rstd = affine_norm(_shifted(x, shift), weight, bias, groups, eps)
    largest = torch.finfo(torch.float8_e4m3fn).max
    quantized = (functional.silu(normed) / scale).clamp(-largest, largest).to(torch.float8_e4m3fn)
    return quantized.contiguous(memory_format=memory_format_of(x))


@group_norm_silu_float8.register_fake
def _group_norm_silu_float8_shape(
    x: torch.Tensor,
    shift: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    groups: int,
    eps: float,
    scale: torch.Tensor,
) -> torch.Tensor:
    return torch.empty_like(x, dtype=torch.float8_e4m3fn, memory_format=memory_format_of(x))


def _silu_input_gradient(
    grad: torch.Tensor,
    shifted: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    groups: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the gradient at the SiLU's input, the normalized values), both float32 in ``shifted``'s shape, from the
    output's gradient ``grad`` and the forward's moments of ``shifted`` (``x + shift``)."""
    grouped = shifted.reshape(shifted.shape[0], groups, -1)
    normalized = ((grouped - mean[..., None]) * rstd[..., None]).reshape(shifted.shape)
    activated = normalized * per_channel(weight, shifted) + per_channel(bias, shifted)
    sigmoid = torch.sigmoid(activated)
    return grad.float() * sigmoid * (1 + activated * (1 - sigmoid)), normalized


@torch.library.custom_op("headshot::group_norm_silu_backward", mutates_args=())
def group_norm_silu_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    shift: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    groups: int,
) -> torch.Tensor:
    """The gradient of ``group_norm_silu``'s output with respect to ``x`` (the same as to ``x + shift``) for the
    output's gradient ``grad``, in ``x``'s dtype and layout: through the SiLU (its input recomputed from ``x``,
    ``shift`` and the moments), then ``group_norm_backward``'s maths; on an NCHW-contiguous or channels-last CUDA
    tensor the Triton kernels do both in the plain backward's two passes."""
    if x.is_cuda and x.is_contiguous():
        from pipeline.diffusion.group_norm_kernel import group_norm_act_backward_nchw

        return group_norm_act_backward_nchw(grad, x, shift, weight, bias, mean, rstd, groups)
    if x.is_cuda and channels_last(x):
        from pipeline.diffusion.group_norm_nhwc_kernel import group_norm_act_backward_nhwc

        return group_norm_act_backward_nhwc(grad, x, shift, weight, bias, mean, rstd, groups)
    shifted = _shifted(x, shift)
    activated_grad, _normalized = _silu_input_gradient(grad, shifted, weight, bias, mean, rstd, groups)
    result = group_norm_backward(activated_grad, shifted, weight, mean, rstd, groups)
    return result.to(x.dtype).contiguous(memory_format=memory_format_of(x))


@group_norm_silu_backward.register_fake
def _group_norm_silu_backward_shape(
    grad: torch.Tensor,
    x: torch.Tensor,
    shift: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    groups: int,
) -> torch.Tensor:
    return torch.empty_like(x, memory_format=memory_format_of(x))


def _save(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    x, shift, weight, bias, groups, _eps = inputs
    _out, mean, rstd = output
    ctx.groups = groups
    ctx.mark_non_differentiable(mean, rstd)
    # The input, not the shifted input nor the SiLU's: the backward recomputes both (one activation less kept).
    ctx.save_for_backward(x, shift, weight, bias, mean, rstd)


def _gradients(ctx: Any, grad: torch.Tensor, _mean_grad: Any, _rstd_grad: Any) -> tuple[Any, ...]:
    x, shift, weight, bias, mean, rstd = ctx.saved_tensors
    wants_x, wants_shift, wants_weight, wants_bias = ctx.needs_input_grad[:4]
    over = [0, *range(2, x.dim())]  # samples and pixels: a channel's
    grad_x = grad_shift = grad_weight = grad_bias = None
    if wants_x or wants_shift:
        grad_x = torch.ops.headshot.group_norm_silu_backward(grad, x, shift, weight, bias, mean, rstd, ctx.groups)
        if wants_shift:  # a (sample, channel)'s shift moved every pixel of it: its gradient is their sum
            grad_shift = grad_x.float().sum(over[1:]).to(shift.dtype)
    if wants_weight or wants_bias:
        # The affine parameters' gradients (a frozen base never asks): sums over samples and pixels, torch ops.
        activated_grad, normalized = _silu_input_gradient(
            grad, _shifted(x, shift), weight, bias, mean, rstd, ctx.groups
        )
        grad_weight = (activated_grad * normalized).sum(over).to(weight.dtype) if wants_weight else None
        grad_bias = activated_grad.sum(over).to(bias.dtype) if wants_bias else None
    return grad_x if wants_x else None, grad_shift, grad_weight, grad_bias, None, None


group_norm_silu.register_autograd(_gradients, setup_context=_save)
