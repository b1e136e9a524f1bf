"""A UNet's up-block samplers as sub-pixel convolutions (``pipeline.diffusion.subpixel_conv``): the nearest 2x
upsampling and its 3x3 convolution as one 2x2 convolution of the small input, four phases wide, and one pass that
interleaves the phases and adds the bias.

SDXL's two samplers (1280 and 640 channels) take 1.97 of a CFG render call's 13.2 TFLOP of convolutions at
928x1152, and their upsampled copies a pass each; sub-pixel they take 16/36 of the products and no copy. Each output
is the same sum of the same products, its taps added first in float32 (``phase_weights``). Channels-last inputs on
any device (the worker's layout where it fuses its blocks; other layouts keep diffusers' forward), a sampler with
``use_conv``, a 3x3 kernel padded by 1, no norm, and an output twice the input's size. What it saves is timed by
``python -m bench.benchmark_float8 --variants
static-blocks-cl-gn-fused-tokens-shared-graphs,static-blocks-cl-gn-fused-subpixel-tokens-shared-graphs`` (a render
call) and
``python -m bench.benchmark_unet_training --modes blocks-nocast-geglu-gn-fusedlora-fusedresnets-fusedtokens-graphs,\
blocks-nocast-geglu-gn-fusedlora-subpixel-fusedresnets-fusedtokens-graphs`` (a training call); a worker's
``HEADSHOT_RENDER_SUBPIXEL_UPSAMPLERS`` and ``HEADSHOT_TRAIN_SUBPIXEL_UPSAMPLERS`` (``jobs.worker.model_setup``) switch
them.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.diffusion.conv_shapes import same_size_3x3
from pipeline.diffusion.glue_calls import RENDER, switch_fused, wanted
from pipeline.diffusion.group_norm import channels_last
from pipeline.diffusion.subpixel_conv import phase_weights, subpixel_conv

__all__ = ["fusable", "use_subpixel_upsamplers"]


def fusable(sampler: Any) -> bool:
    """Whether ``sampler`` (a diffusers ``Upsample2D``) upsamples and convolves as the sub-pixel form computes."""
    conv = getattr(sampler, "conv", None) if getattr(sampler, "name", None) == "conv" else None
    return (
        type(sampler).__name__ == "Upsample2D"
        and sampler.use_conv
        and not sampler.use_conv_transpose
        and sampler.interpolate
        and sampler.norm is None
        and same_size_3x3(conv)
    )


def use_subpixel_upsamplers(unet: Any, *, calls: str = RENDER, enabled: bool = True) -> int:
    """Run each fusable up-block sampler of ``unet`` as a sub-pixel convolution in ``calls`` (``glue_calls.RENDER``
    or ``TRAIN``), or (``enabled=False``) no longer in those; return how many changed."""
    return switch_fused(unet, calls=calls, enabled=enabled, methods=("forward",), fusable=fusable, fuse=_fused)


def _fused(sampler: Any, fused: set[str]) -> dict[str, Any]:
    eager = sampler.forward  # the class's, bound
    kept: dict[str, Any] = {}  # the phase kernels of the weight they were made from, while it is unchanged

    def phases() -> torch.Tensor:
        weight = sampler.conv.weight
        if weight.requires_grad and torch.is_grad_enabled():  # training it: the phases in the autograd graph, made
            return phase_weights(weight)  # each call (a rendering call keeps them: their making copies from the host)
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        if kept.get("key") != key:
            kept["key"], kept["phases"] = key, phase_weights(weight.detach()).contiguous(memory_format=_layout(weight))
        return kept["phases"]

    def forward(hidden_states: torch.Tensor, output_size: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        doubled = tuple(2 * size for size in hidden_states.shape[2:])
        same = output_size is None or tuple(output_size) == doubled
        if not (wanted(fused) and same and channels_last(hidden_states)) or args or kwargs:
            return eager(hidden_states, output_size, *args, **kwargs)
        bias = sampler.conv.bias
        return subpixel_conv(hidden_states, phases(), None if bias is None else bias.float())

    return {"forward": forward}


def _layout(weight: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if channels_last(weight) else torch.contiguous_format
