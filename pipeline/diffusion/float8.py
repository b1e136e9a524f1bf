"""FP8 matrix products for rendering: the UNet's transformer layers multiply in float8 (e4m3) with per-row scales.

On Hopper and Ada GPUs the tensor cores multiply float8 at twice the bf16 rate, and SDXL spends about 70% of a
UNet call's FLOPs in the linear layers of its transformer blocks (attention projections, feed-forward, proj_in/out).
``Float8Linear`` keeps the layer's bf16 weight (the same ``Parameter``: LoRA merging and training still see it) plus
an FP8 copy with one scale per output row; each forward scales every input row by its own absolute maximum, casts it
to FP8 and calls ``torch._scaled_mm``. This is the "dynamic activation, rowwise weight" scheme torchao serves Flux
with; under ``torch.compile`` the scaling and cast fuse into the kernel before the product.

The FP8 path runs only with autograd off (rendering): with gradients on, as in training a LoRA on the same pipeline,
the layer is the plain bf16 ``nn.Linear``. The FP8 copy is a snapshot, so whoever changes the weight in place must
call ``refresh()``; ``LoraSlot`` does after every merge and unmerge.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional

__all__ = ["FLOAT8_MODULE_PARTS", "Float8Linear", "use_float8_linears"]

FLOAT8 = torch.float8_e4m3fn
FLOAT8_MAX = torch.finfo(FLOAT8).max  # 448
# The UNet's transformer blocks; their time-embedding and ResNet linears see one row per image and gain nothing.
FLOAT8_MODULE_PARTS = (".attentions.",)


class Float8Linear(nn.Linear):
    """An ``nn.Linear`` that renders through FP8 products; build it with ``from_linear``."""

    weight_fp8: torch.Tensor
    weight_scale: torch.Tensor

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Float8Linear:
        """A Float8Linear sharing ``linear``'s weight and bias tensors (no copy of the bf16 weight)."""
        out_features, in_features = linear.weight.shape
        if in_features % 16 or out_features % 16:
            raise ValueError(
                f"FP8 products need both sides of the weight to be multiples of 16, but it is {out_features}x"
                f"{in_features}; leave this layer in bf16."
            )
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = in_features, out_features
        layer.weight = linear.weight
        layer.bias = linear.bias
        device = linear.weight.device
        layer.register_buffer("weight_fp8", torch.empty(out_features, in_features, dtype=FLOAT8, device=device))
        layer.register_buffer("weight_scale", torch.empty(1, out_features, dtype=torch.float32, device=device))
        layer.refresh()
        return layer

    @torch.no_grad()
    def refresh(self) -> None:
        """Quantize the current bf16 weight again, in place (a compiled graph keeps the same buffers)."""
        quantized, scale = _quantize_rows(self.weight)
        self.weight_fp8.copy_(quantized)
        self.weight_scale.copy_(scale.t())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return functional.linear(x, self.weight, self.bias)
        rows = x.reshape(-1, self.in_features)
        quantized, scale = _quantize_rows(rows)
        # The weight is stored (out, in) row-major, so its transpose is the column-major operand _scaled_mm wants.
        product = torch._scaled_mm(
            quantized, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale, out_dtype=x.dtype
        )
        if self.bias is not None:
            product = product + self.bias
        return product.reshape(*x.shape[:-1], self.out_features)


def _quantize_rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``matrix`` in FP8 with one float32 scale per row (rows x 1), each row's largest value mapped to FP8's max."""
    wide = matrix.float()
    scale = wide.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FLOAT8_MAX
    return (wide / scale).clamp(-FLOAT8_MAX, FLOAT8_MAX).to(FLOAT8), scale


def use_float8_linears(unet: Any, *, module_parts: tuple[str, ...] = FLOAT8_MODULE_PARTS) -> int:
    """Make every eligible ``nn.Linear`` of ``unet`` a ``Float8Linear`` in place; return how many were converted.

    Eligible: inside a module whose dotted name contains one of ``module_parts``, with both weight sides multiples
    of 16. A LoRA layer's base layer is converted too (its LoRA branch stays bf16). Calling it again converts nothing.
    """
    converted = 0
    for name, module in list(unet.named_modules()):
        if type(module) is not nn.Linear or not any(part in f".{name}." for part in module_parts):
            continue
        if ".lora_" in f".{name}":  # a LoRA's own A/B matrices: tiny, and the slot's must stay swappable in bf16
            continue
        if module.in_features % 16 or module.out_features % 16:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(unet.get_submodule(parent_name), child, Float8Linear.from_linear(module))
        converted += 1
    return converted
