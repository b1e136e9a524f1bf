"""What the benchmarks need around the product's FP8 layers (``pipeline.diffusion.float8``): undoing the conversion,
so one process times bf16 and FP8 on the same model; and rendering's group norms through ``headshot::group_norm``,
which a worker renders through torch's."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.diffusion.float8 import Float8Linear
from pipeline.diffusion.group_norm import OneOperatorGroupNorm

__all__ = ["RenderingGroupNorm", "use_bf16_linears", "use_rendering_group_norms"]


def use_bf16_linears(unet: Any) -> int:
    """Undo ``use_float8_linears``: every ``Float8Linear`` of ``unet`` back to a plain ``nn.Linear`` sharing its
    weight and bias (the FP8 copies are dropped); return how many."""
    restored = 0
    for name, module in list(unet.named_modules()):
        if not isinstance(module, Float8Linear):
            continue
        with torch.device("meta"):  # no throwaway weights: the FP8 layer's own tensors are put in below
            plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        plain.weight, plain.bias = module.weight, module.bias
        parent_name, _, child = name.rpartition(".")
        setattr(unet.get_submodule(parent_name), child, plain)
        restored += 1
    return restored


class RenderingGroupNorm(OneOperatorGroupNorm):
    """``OneOperatorGroupNorm`` with gradients off too: a worker renders through torch's norm (the operator's launches
    from Python cost the host more than its kernels save); this times a render call the other way, replayed or not."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch.nn.GroupNorm's parameter name
        if input.dim() < 3 or not input.is_contiguous():
            return nn.functional.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)
        return torch.ops.headshot.group_norm(input, self.weight, self.bias, self.num_groups, self.eps)[0]


def use_rendering_group_norms(unet: Any, *, enabled: bool = True) -> int:
    """Every affine group norm of ``unet`` a ``RenderingGroupNorm`` (``enabled=False``: torch's again); return how
    many."""
    count = 0
    for module in unet.modules():
        if isinstance(module, nn.GroupNorm) and module.affine:
            module.__class__ = RenderingGroupNorm if enabled else nn.GroupNorm
            count += 1
    return count
