"""A ResNet block's residual add with its convolutions' biases in the same pass (``headshot::add_residual_bias``;
``pipeline.diffusion.resnet_glue`` runs the fused blocks' ends through it).

On CUDA torch adds a convolution's bias in a pass of its own after cuDNN's product: a broadcasting add of a (1, C, 1,
1) tensor over the whole output, off the vectorized path (ATen's ``_convolution``). A block's end then reads and
writes its activation three times: the second convolution's bias, the shortcut convolution's bias where it has one,
and the residual add. Here the two convolutions run without their biases and one pass adds the residual and both
biases (``x + residual + bias``, in float32, rounded once). On CUDA, NCHW-contiguous or channels-last inputs of
one layout run ``residual_bias_kernel``'s Triton kernel; elsewhere the same sum runs in torch ops.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.diffusion.group_norm import channels_last, memory_format_of, per_channel

__all__ = ["add_residual_bias"]


@torch.library.custom_op("headshot::add_residual_bias", mutates_args=())
def add_residual_bias(x: torch.Tensor, residual: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x + residual + bias`` in ``x``'s dtype and layout, ``bias`` (C,) added to each channel, the sum in float32:
    ``x`` a convolution's output without its bias, ``residual`` the block's shortcut, ``bias`` what both left out."""
    if x.is_cuda and x.shape == residual.shape and x.dtype == residual.dtype and x.stride() == residual.stride():
        from pipeline.diffusion.residual_bias_kernel import add_residual_bias as kernel
        from pipeline.diffusion.residual_bias_kernel import fits

        nhwc = channels_last(x)
        if (nhwc or x.is_contiguous()) and fits(x):
            return kernel(x, residual, bias, nhwc)
    total = x.float() + residual.float() + per_channel(bias, x)
    return total.to(x.dtype).contiguous(memory_format=memory_format_of(x))


@add_residual_bias.register_fake
def _add_residual_bias_shape(x: torch.Tensor, residual: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x, memory_format=memory_format_of(x))


def _save(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, residual, bias = inputs
    ctx.dtypes = x.dtype, residual.dtype, bias.dtype


def _gradients(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    wants_x, wants_residual, wants_bias = ctx.needs_input_grad
    x_dtype, residual_dtype, bias_dtype = ctx.dtypes
    # A sum passes its gradient to each term; a channel's bias moved every (sample, pixel) of it.
    grad_bias = grad.float().sum((0, *range(2, grad.dim()))).to(bias_dtype) if wants_bias else None
    return (
        grad.to(x_dtype) if wants_x else None,
        grad.to(residual_dtype) if wants_residual else None,
        grad_bias,
    )


add_residual_bias.register_autograd(_gradients, setup_context=_save)
