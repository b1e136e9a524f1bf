"""Which convolutions the project's replacements compute: a plain 3x3 one that keeps its input's size."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["same_size_3x3"]


def same_size_3x3(conv: Any) -> bool:
    """Whether ``conv`` is a plain ``torch.nn.Conv2d`` (not a subclass), 3x3, stride 1, zero padding 1, no dilation,
    one group: the convolution both the sub-pixel samplers (``upsample_glue``) and the FP8 convolutions
    (``float8_conv``) rewrite."""
    return (
        type(conv) is torch.nn.Conv2d
        and tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.padding) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )
