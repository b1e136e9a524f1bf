"""FP8 convolutions for rendering: the 3x3 convolutions of a UNet's ResNet blocks multiply in float8 (e4m3).

With the transformers' linears in FP8 (``float8``), convolutions are the UNet's largest bf16 work left: 13.2 of an
SDXL render call's ~54 TFLOP, ~17% of its kernel time on an H100 (BENCHMARKS.md, 2026-12-06 twentieth session),
and most of it in the ResNet blocks' 3x3 convolutions. Torch has no FP8 convolution, so ``headshot::conv3x3_float8``
is an implicit GEMM in Triton (``float8_conv_kernel``) over a channels-last input: no im2col copy, the input in e4m3
by a static scale (written so by the norm before it, ``resnet_glue``, or cast in a pass of its own), the weight in
e4m3 with one scale per out channel, float32 accumulation, and the bias added in the epilogue (where torch adds it
in a pass of its own on CUDA).

``Float8Conv2d`` follows ``Float8Linear``'s static scheme, so ``float8_scales`` calibrates, keeps and reloads its
input scale with the linears': it renders (no gradients) through the operator once calibrated, calibrates in bf16
while ``calibrating``, and trains as the plain convolution. Where the operator's kernel does not apply (not CUDA,
not channels-last, channel counts off its tiles) it computes the same quantized maths in torch ops, which is also
what the tests hold the kernel to. Its FP8 weight is a snapshot: whoever changes the weight in place calls
``refresh()`` (``lora_slot`` does after merging into any FP8 layer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional

from pipeline.diffusion.conv_shapes import same_size_3x3
from pipeline.diffusion.float8 import FLOAT8, FLOAT8_MAX, scale_for
from pipeline.diffusion.group_norm import channels_last, memory_format_of

__all__ = [
    "FLOAT8_CONV_PARTS",
    "NORM_WRITES_FLOAT8",
    "Float8Conv2d",
    "convertible",
    "use_bf16_convs",
    "use_float8_convs",
]

# The ResNet blocks' two convolutions; the samplers (strided, or after an upsampling), conv_in (4 channels) and
# conv_out (4 out) stay bf16.
FLOAT8_CONV_PARTS = (".resnets.",)
_CHILDREN = ("conv1", "conv2")
# Whether a fused ResNet block's norm (``resnet_glue``) writes an FP8 convolution's input in e4m3 itself, or hands it
# bf16 for the operator to cast in a pass of its own (``bench.benchmark_float8``'s "-fp8convcast" times that way).
NORM_WRITES_FLOAT8 = True


def convertible(conv: Any) -> bool:
    """Whether ``conv`` is a convolution ``Float8Conv2d`` computes: 3x3, stride 1, zero padding 1, no dilation or
    groups, input channels a multiple of 32 and out channels of 16 (the FP8 products' tiles)."""
    return same_size_3x3(conv) and conv.in_channels % 32 == 0 and conv.out_channels % 16 == 0


class Float8Conv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (3x3, padding 1) that renders through ``headshot::conv3x3_float8``; build it with
    ``from_conv``."""

    weight_fp8: torch.Tensor  # (out, 9 in): each out channel's taps, tap-major, the kernel's reduction contiguous
    weight_scale: torch.Tensor  # (out,)
    input_scale: torch.Tensor
    input_max: torch.Tensor
    scaling: str
    calibrating: bool
    calibrated: bool

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> Float8Conv2d:
        """A Float8Conv2d sharing ``conv``'s weight and bias tensors (no copy of the bf16 weight)."""
        if not convertible(conv):
            raise ValueError(
                f"{conv} is not a 3x3, stride-1, zero-padded convolution with input channels a multiple of 32 and "
                "out channels of 16; leave it in bf16."
            )
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
            setattr(layer, name, getattr(conv, name))
        for name in ("transposed", "output_padding", "padding_mode", "_reversed_padding_repeated_twice"):
            setattr(layer, name, getattr(conv, name))
        layer.weight = conv.weight
        layer.bias = conv.bias
        layer.scaling = "static"
        layer.calibrating = layer.calibrated = False
        device = conv.weight.device
        layer.register_buffer(
            "weight_fp8", torch.empty(conv.out_channels, 9 * conv.in_channels, dtype=FLOAT8, device=device)
        )
        layer.register_buffer("weight_scale", torch.empty(conv.out_channels, dtype=torch.float32, device=device))
        # NaN until calibrated: the layer refuses to render without its input scale.
        layer.register_buffer("input_scale", torch.full((), torch.nan, device=device))
        layer.register_buffer("input_max", torch.zeros((), device=device))
        layer.refresh()
        return layer

    @torch.no_grad()
    def refresh(self) -> None:
        """Quantize the current bf16 weight again, in place (a CUDA graph keeps the same buffers)."""
        weight = self.weight.detach().float()
        scale = scale_for(weight.abs().amax(dim=(1, 2, 3)))
        taps = (weight / scale[:, None, None, None]).clamp(-FLOAT8_MAX, FLOAT8_MAX)
        self.weight_fp8.copy_(taps.permute(0, 2, 3, 1).reshape(self.out_channels, 9 * self.in_channels).to(FLOAT8))
        self.weight_scale.copy_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or self.calibrating:
            if self.calibrating:
                self.input_max.copy_(torch.maximum(self.input_max, x.detach().abs().amax().float()))
            return functional.conv2d(x, self.weight, self.bias, 1, 1)
        if not self.calibrated:
            raise RuntimeError(
                "This FP8 convolution scales its input statically and has not been calibrated; run "
                "float8_scales.calibrate_float8 on its model (a few renders) before rendering."
            )
        return self.quantized(x, x.dtype)

    def renders_float8(self) -> bool:
        """Whether a call now would render through the FP8 operator (no gradients, calibrated, not calibrating):
        where a caller may hand it an input quantized already (``quantized``)."""
        return not torch.is_grad_enabled() and self.calibrated and not self.calibrating

    def quantized(self, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """The FP8 convolution of ``x``: bf16 (quantized by the input scale on the way in) or e4m3 already divided by
        it (``group_norm_silu_float8``'s output), the result in ``out_dtype``."""
        return torch.ops.headshot.conv3x3_float8(
            x, self.weight_fp8, self.weight_scale, self.input_scale, self.bias, out_dtype
        )


@torch.library.custom_op("headshot::conv3x3_float8", mutates_args=())
def conv3x3_float8(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    input_scale: torch.Tensor,
    bias: torch.Tensor | None,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """A 3x3 convolution with zero padding 1 of ``x`` (N, C, H, W) quantized to e4m3 by ``input_scale`` (or, an e4m3
    ``x``, quantized so already), by the e4m3 ``weight`` (O, 9 C) (tap ``3 ky + kx`` major) scaled by
    ``weight_scale`` (O,), plus ``bias``: the products in FP8, summed in float32, rounded once to ``out_dtype``, in
    ``x``'s layout."""
    quantized = x if x.dtype == FLOAT8 else (x.float() / input_scale).clamp(-FLOAT8_MAX, FLOAT8_MAX).to(FLOAT8)
    if x.is_cuda and channels_last(x):
        from pipeline.diffusion.float8_conv_kernel import conv3x3_float8 as kernel
        from pipeline.diffusion.float8_conv_kernel import fits

        if fits(x, weight.shape[0]):
            # A bf16 input cast in a pass of its own: cast in the kernel's loop, each value nine times, the
            # convolutions measured 1.6x slower (BENCHMARKS.md 2026-12-06 twenty-first session).
            quantized = quantized.contiguous(memory_format=torch.channels_last)
            return kernel(quantized, weight, weight_scale, input_scale, bias, out_dtype)
    channels_in, channels_out = x.shape[1], weight.shape[0]
    quantized = quantized.float()
    taps = weight.float().reshape(channels_out, 3, 3, channels_in).permute(0, 3, 1, 2)
    output = functional.conv2d(quantized, taps * weight_scale[:, None, None, None], None, 1, 1) * input_scale
    if bias is not None:
        output = output + bias.float()[None, :, None, None]
    return output.to(out_dtype).contiguous(memory_format=memory_format_of(x))


@conv3x3_float8.register_fake
def _conv3x3_float8_shape(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    input_scale: torch.Tensor,
    bias: torch.Tensor | None,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    shape = (x.shape[0], weight.shape[0], x.shape[2], x.shape[3])
    return torch.empty(shape, dtype=out_dtype, device=x.device, memory_format=memory_format_of(x))


def use_float8_convs(unet: Any, *, module_parts: tuple[str, ...] = FLOAT8_CONV_PARTS) -> int:
    """Make each convertible ResNet convolution (``conv1``, ``conv2``) of ``unet`` a ``Float8Conv2d`` in place; return
    how many were converted. They render only after ``float8_scales.calibrate_float8``; calling it again converts
    nothing."""
    converted = 0
    for name, module in list(unet.named_modules()):
        parent_name, _, child = name.rpartition(".")
        if child not in _CHILDREN or not any(part in f".{name}." for part in module_parts):
            continue
        if not convertible(module):
            continue
        setattr(unet.get_submodule(parent_name), child, Float8Conv2d.from_conv(module))
        converted += 1
    return converted


def use_bf16_convs(unet: Any) -> int:
    """Undo ``use_float8_convs``: every ``Float8Conv2d`` of ``unet`` back to a plain ``nn.Conv2d`` sharing its weight
    and bias (the FP8 copy dropped); return how many."""
    restored = 0
    for name, module in list(unet.named_modules()):
        if not isinstance(module, Float8Conv2d):
            continue
        with torch.device("meta"):  # no throwaway weights: the FP8 layer's own tensors are put in below
            plain = nn.Conv2d(module.in_channels, module.out_channels, 3, padding=1, bias=module.bias is not None)
        plain.weight, plain.bias = module.weight, module.bias
        parent_name, _, child = name.rpartition(".")
        setattr(unet.get_submodule(parent_name), child, plain)
        restored += 1
    return restored
