"""What the benchmarks need around the product's FP8 layers (``pipeline.diffusion.float8``): undoing the conversion,
so one process times bf16 and FP8 on the same model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.diffusion.float8 import Float8Linear

__all__ = ["use_bf16_linears"]


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
