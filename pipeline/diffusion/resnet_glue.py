"""A UNet's ResNet blocks with each norm, its SiLU and the time embedding's add in one operator.

Replayed from CUDA graphs with the glue between the compiled blocks eager (``HEADSHOT_RENDER_CUDA_GRAPHS``), an
SDXL render call still spends ~6.5 of its ~118 ms of kernels on a ResNet block's elementwise work around its norms
(an H100 80GB's profile, BENCHMARKS.md 2026-12-05 sixteenth session): the time embedding added to the first
convolution's output by a broadcasting kernel that is not vectorised (~5 ms) and a SiLU after each norm (~1.5 ms),
each a read and a write of the whole activation, and a division of each block's output by 1. A training call pays
the same, plus each SiLU's backward (another pass) and the SiLU's input kept for it (one activation a norm). Here
``headshot::group_norm_silu`` folds the add and the SiLU into the norm's own two passes, and its backward the SiLU's
derivative into the norm's backward passes, recomputing what it needs from the block's input
(``pipeline.diffusion.group_norm_silu``). On CUDA torch adds a convolution's bias in a broadcasting pass of its
own (~3.5 ms of an H200's ~105 ms render call, BENCHMARKS.md 2026-12-06): the first convolution's bias joins the time
embedding in that add (``_without_bias``), and the second's and the shortcut's join the residual add
(``headshot::add_residual_bias``). Where a block's convolutions render in FP8 (``float8_conv``), each norm writes
its convolution's input in e4m3 (``headshot::group_norm_silu_float8``) and the convolution adds its own bias. The
division by 1 is skipped, and the rest runs as diffusers' ``ResnetBlock2D.forward`` does. What that saves is timed
by ``python -m bench.benchmark_float8 --variants static-blocks-gn-graphs,static-blocks-gn-fused-graphs`` (a render
call) and ``python -m bench.benchmark_unet_training
--modes blocks-nchw-nocast-geglu-gn-fusedlora-graphs,blocks-nchw-nocast-geglu-gn-fusedlora-fusedresnets-graphs`` (a
training call); what it saves a training call's memory by ``python -m bench.saved_activations``.

Rendering (calls without gradients) and training (calls with them) each take it only when asked
(``use_fused_resnets``'s ``calls``); only NCHW-contiguous or channels-last inputs (each layout has Triton kernels of
its own), and only the blocks a UNet's down, mid and up blocks hold: ``time_embedding_norm`` "default", no up- or
downsampling inside, SiLU as the nonlinearity, affine group norms. Anything else keeps diffusers' forward."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.nn import functional

from pipeline.diffusion import float8_conv
from pipeline.diffusion import group_norm_silu as _registers_the_norm  # noqa: F401  # headshot::group_norm_silu
from pipeline.diffusion import residual_bias as _registers_the_add  # noqa: F401  # headshot::add_residual_bias
from pipeline.diffusion.float8_conv import Float8Conv2d
from pipeline.diffusion.glue_calls import RENDER, TRAIN, switch_fused, wanted
from pipeline.diffusion.group_norm import channels_last

__all__ = ["RENDER", "TRAIN", "fusable", "use_fused_resnets"]


def fusable(block: Any) -> bool:
    """Whether ``block`` (a diffusers ``ResnetBlock2D``) has the structure the fused forward computes."""
    norms = (getattr(block, "norm1", None), getattr(block, "norm2", None))
    return (
        type(block).__name__ == "ResnetBlock2D"
        and getattr(block, "time_embedding_norm", None) == "default"
        and block.upsample is None
        and block.downsample is None
        and isinstance(block.nonlinearity, torch.nn.SiLU)
        and all(isinstance(norm, torch.nn.GroupNorm) and norm.affine for norm in norms)
    )


def use_fused_resnets(unet: Any, *, calls: str = RENDER, enabled: bool = True, fold_biases: bool = True) -> int:
    """Run each fusable ResNet block of ``unet`` through ``headshot::group_norm_silu`` in ``calls`` (``RENDER``:
    without gradients; ``TRAIN``: with them), or (``enabled=False``) no longer in those; return how many blocks
    changed. ``fold_biases=False`` (for measuring what the folds save) leaves the convolutions their biases, as
    blocks fused before any call keep. Before any compile of the glue: an instance's own ``forward`` shadows the
    class's, and ``acceleration.compile_unet_regions`` leaves such a block eager."""
    fuse = functools.partial(_fused, fold_biases=fold_biases)
    return switch_fused(unet, calls=calls, enabled=enabled, methods=("forward",), fusable=fusable, fuse=fuse)


def _fused(block: Any, fused: set[str], *, fold_biases: bool) -> dict[str, Any]:
    eager = block.forward  # the class's, bound

    @functools.wraps(eager)
    def forward(input_tensor: torch.Tensor, temb: torch.Tensor | None, *args: Any, **kwargs: Any) -> torch.Tensor:
        dropping = block.training and block.dropout.p > 0
        laid_out = input_tensor.is_contiguous() or channels_last(input_tensor)
        if not wanted(fused) or args or kwargs or dropping or not laid_out:
            return eager(input_tensor, temb, *args, **kwargs)
        hidden, bias = _norm_then_conv(block.norm1, block.conv1, input_tensor, None, fold_biases)
        shift = None if bias is None else bias.expand(hidden.shape[0], -1)
        if block.time_emb_proj is not None and temb is not None:
            embedded = block.time_emb_proj(temb if block.skip_time_act else block.nonlinearity(temb))
            shift = embedded if shift is None else shift + embedded.float()
        # No dropout between: it drops nothing here (``dropping`` took diffusers' forward where it would).
        hidden, bias = _norm_then_conv(block.norm2, block.conv2, hidden, shift, fold_biases)
        shortcut = input_tensor
        if block.conv_shortcut is not None:
            shortcut, shortcut_bias = _without_bias(block.conv_shortcut, input_tensor, fold_biases)
            if shortcut_bias is not None:
                bias = shortcut_bias if bias is None else bias + shortcut_bias
        # No division by a factor of 1 (SDXL's): the same values as diffusers' ``(shortcut + hidden) / factor``.
        if bias is not None:
            hidden = torch.ops.headshot.add_residual_bias(hidden, shortcut, bias)
        else:
            hidden += shortcut  # in place on the convolution's fresh output: one allocation fewer
        return hidden if block.output_scale_factor == 1 else hidden / block.output_scale_factor

    return {"forward": forward}


def _norm_then_conv(
    norm: Any, conv: Any, x: torch.Tensor, shift: torch.Tensor | None, fold: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``conv(silu(norm(x + shift)))`` as ``_without_bias`` returns it. Into an FP8 convolution that renders now, the
    norm writes its output in e4m3 by the convolution's input scale (``headshot::group_norm_silu_float8``): half the
    bytes, and no cast in a pass of its own."""
    if isinstance(conv, Float8Conv2d) and float8_conv.NORM_WRITES_FLOAT8 and conv.renders_float8():
        quantized = torch.ops.headshot.group_norm_silu_float8(
            x, shift, norm.weight, norm.bias, norm.num_groups, norm.eps, conv.input_scale
        )
        return conv.quantized(quantized, x.dtype), None
    hidden = torch.ops.headshot.group_norm_silu(x, shift, norm.weight, norm.bias, norm.num_groups, norm.eps)[0]
    return _without_bias(conv, hidden, fold)


def _without_bias(conv: Any, x: torch.Tensor, fold: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``conv(x)`` without its bias, and the bias (C,) in float32, for the operator after it to add in a pass it
    makes anyway: torch adds a convolution's bias on CUDA in a pass of its own, a broadcasting add off its vectorized
    path. A convolution of another kind (a LoRA's wrapper, another padding mode), or any where not ``fold``, runs as
    it is, its bias None."""
    if not fold or type(conv) is not torch.nn.Conv2d or conv.bias is None or conv.padding_mode != "zeros":
        return conv(x), None
    output = functional.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return output, conv.bias.float()
