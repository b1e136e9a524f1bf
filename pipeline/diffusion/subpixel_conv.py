"""A nearest 2x upsampling and the 3x3 convolution after it as one 2x2 convolution of the small input, four phases
wide, and one interleaving pass (``subpixel_conv``; ``headshot::subpixel_interleave``).

SDXL's two up-block samplers double the image by repeating each pixel and then convolve the result: a quarter of
that convolution's products multiply copies of one value, and the repeat writes four times the input once more for
the convolution to read. Each output pixel's phase (its row's and its column's parity) sees the repeated image
through the 3x3 kernel as a 2x2 window of the input with some taps summed, so the same output is four 2x2
convolutions of the input: 16 products a pixel and channel pair instead of 36, and no upsampled copy. Here one
convolution computes all four phases as 4x the output channels over the input padded by one pixel, and
``headshot::subpixel_interleave`` writes each output pixel from its phase, adding the bias there (on CUDA torch adds
a convolution's bias in a pass of its own). On CUDA a channels-last tensor runs ``subpixel_kernel``'s Triton kernel;
elsewhere the same copy runs in torch ops.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

from pipeline.diffusion.group_norm import channels_last, memory_format_of

__all__ = ["phase_weights", "subpixel_conv", "subpixel_interleave"]

# PHASE_TAPS[p][r][k]: which of the 3x3 kernel's taps k (along one axis) land on input offset r of a 2x2 window for
# an output pixel of parity p: an even pixel sees the repeated image's previous pixel alone and its own pair summed,
# an odd one its own pair summed and the next pixel alone.
PHASE_TAPS = ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def phase_weights(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution's ``weight`` (out, in, 3, 3) as its four phases' 2x2 kernels (4 out, in, 2, 2), the phase
    of an output pixel in row parity a and column parity b at ``(2a + b) * out``; each tap summed in float32 (or the
    weight's wider dtype), rounded once."""
    wide = torch.promote_types(weight.dtype, torch.float32)
    taps = torch.tensor(PHASE_TAPS, dtype=wide, device=weight.device)
    phases = torch.einsum("ark,bsl,oikl->aboirs", taps, taps, weight.to(wide))
    return phases.reshape(4 * weight.shape[0], weight.shape[1], 2, 2).to(weight.dtype)


def subpixel_conv(x: torch.Tensor, phases: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``functional.conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)`` from
    ``phases = phase_weights(weight)``: one 2x2 convolution over ``x`` padded by one pixel, then each output pixel
    from its phase, plus ``bias``, in ``x``'s layout."""
    height, width = x.shape[2], x.shape[3]
    output = functional.conv2d(x, phases, None, 1, 1)
    if bias is None:
        bias = output.new_zeros(phases.shape[0] // 4, dtype=torch.float32)
    return torch.ops.headshot.subpixel_interleave(output, bias, height, width)


@torch.library.custom_op("headshot::subpixel_interleave", mutates_args=())
def subpixel_interleave(phases: torch.Tensor, bias: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``out[n, c, 2i + a, 2j + b] = phases[n, (2a + b) * C + c, i + a, j + b] + bias[c]`` for ``phases`` (N, 4C,
    height + 1, width + 1), the sum in float32: the four phases' outputs of ``subpixel_conv`` as one image of twice
    the size, in ``phases``'s layout."""
    if phases.is_cuda and channels_last(phases):
        from pipeline.diffusion.subpixel_kernel import fits
        from pipeline.diffusion.subpixel_kernel import subpixel_interleave as kernel

        if fits(phases):
            return kernel(phases, bias, height, width)
    samples, channels = phases.shape[0], phases.shape[1] // 4
    shape = (samples, channels, 2 * height, 2 * width)
    out = torch.empty(shape, dtype=phases.dtype, device=phases.device, memory_format=memory_format_of(phases))
    wide = torch.promote_types(phases.dtype, torch.float32)
    shift = bias.to(wide).reshape(1, -1, 1, 1)
    for a in (0, 1):
        for b in (0, 1):
            phase = phases[:, (2 * a + b) * channels : (2 * a + b + 1) * channels, a : a + height, b : b + width]
            out[:, :, a::2, b::2] = (phase.to(wide) + shift).to(out.dtype)
    return out


@subpixel_interleave.register_fake
def _subpixel_interleave_shape(phases: torch.Tensor, bias: torch.Tensor, height: int, width: int) -> torch.Tensor:
    shape = (phases.shape[0], phases.shape[1] // 4, 2 * height, 2 * width)
    return torch.empty(shape, dtype=phases.dtype, device=phases.device, memory_format=memory_format_of(phases))


def _save(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    phases, bias, _height, _width = inputs
    ctx.phase_shape, ctx.layout, ctx.bias_dtype = phases.shape, memory_format_of(phases), bias.dtype


def _gradients(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    # Each output pixel came from one phase pixel: its gradient goes back there; the phases' extra row and column
    # (each phase uses (height, width) of its (height + 1, width + 1)) get none.
    wants_phases, wants_bias = ctx.needs_input_grad[:2]
    grad_phases = grad_bias = None
    if wants_phases:
        grad_phases = grad.new_zeros(ctx.phase_shape).contiguous(memory_format=ctx.layout)
        channels, height, width = ctx.phase_shape[1] // 4, grad.shape[2] // 2, grad.shape[3] // 2
        for a in (0, 1):
            for b in (0, 1):
                rows, columns = slice(a, a + height), slice(b, b + width)
                phase = slice((2 * a + b) * channels, (2 * a + b + 1) * channels)
                grad_phases[:, phase, rows, columns] = grad[:, :, a::2, b::2]
    if wants_bias:
        grad_bias = grad.to(torch.promote_types(grad.dtype, torch.float32)).sum((0, 2, 3)).to(ctx.bias_dtype)
    return grad_phases, grad_bias, None, None


subpixel_interleave.register_autograd(_gradients, setup_context=_save)
