"""SDXL's feed-forward entry rendered as one FP8 operator (``headshot::geglu_float8``): the GEGLU's projection, the
gate, and the cast to e4m3 for the feed-forward's second layer.

A feed-forward with FP8 layers (``pipeline.diffusion.float8``) renders its entry as cuBLAS's FP8 product, which
writes the (tokens, 2 x inner) projection in bf16, then an inductor kernel that reads it back, applies
``value * gelu(gate)`` and writes the e4m3 input of the second layer: ~7 ms of an H100's ~104 ms render call
(``triton_poi_fused__scaled_mm__to_copy_clamp_div_gelu_mul_split``, BENCHMARKS.md 2026-12-06 twenty-first session),
beside the projection's bf16 write. The operator computes the value's and the gate's tiles in one Triton kernel
(``geglu_float8_kernel``), gates in its epilogue and writes only the second layer's e4m3 input, which that layer
multiplies without a cast of its own: a request's GPU time 1.7% less through the worker on an H100 (BENCHMARKS.md
2026-12-06 twenty-second session). The maths are the worker's, less two bf16 roundings (the projection's and the
gated product's) before the e4m3 one: the operator's e4m3 values are the same or one step apart. Elsewhere (a CPU,
tests) the same maths run in float32 torch ops.

``use_fused_feed_forwards`` switches it on for rendering (``glue_calls``) in feed-forwards of a diffusers GEGLU, no
dropout, and two static FP8 layers; calibrating, or uncalibrated, a feed-forward runs diffusers' forward. What it
saves is timed by ``python -m bench.benchmark_geglu_float8`` (the entry alone) and by
``python -m bench.benchmark_float8`` with and without ``-ffgate`` in a variant's name (a render call).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.activations import GEGLU
from torch import nn
from torch.nn import functional

from pipeline.diffusion.float8 import FLOAT8, FLOAT8_MAX, Float8Linear
from pipeline.diffusion.glue_calls import RENDER, switch_fused, wanted

__all__ = ["fusable", "geglu_float8", "use_fused_feed_forwards"]


@torch.library.custom_op("headshot::geglu_float8", mutates_args=())
def geglu_float8(
    x: torch.Tensor,
    weight: torch.Tensor,
    input_scale: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor,
    out_scale: torch.Tensor,
) -> torch.Tensor:
    """``fp8(value * gelu(gate) / out_scale)`` for ``[value, gate] = x @ weight.T * input_scale * weight_scale +
    bias``: ``x`` (rows, features) e4m3, ``weight`` (2 inner, features) e4m3 (the value's rows, then the gate's),
    both by per-tensor scales; the (rows, inner) result clipped to e4m3's range. The products summed in float32, the
    gate exact (as diffusers' GEGLU), one rounding to e4m3."""
    projected = (x.float() @ weight.float().t()) * (input_scale * weight_scale) + bias.float()
    value, gate = projected.chunk(2, dim=-1)
    return (value * functional.gelu(gate) / out_scale).clamp(-FLOAT8_MAX, FLOAT8_MAX).to(FLOAT8)


@geglu_float8.register_fake
def _geglu_float8_shape(
    x: torch.Tensor,
    weight: torch.Tensor,
    input_scale: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor,
    out_scale: torch.Tensor,
) -> torch.Tensor:
    return x.new_empty((x.shape[0], weight.shape[0] // 2), dtype=FLOAT8)


@geglu_float8.register_kernel("cuda")
def _geglu_float8_cuda(
    x: torch.Tensor,
    weight: torch.Tensor,
    input_scale: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor,
    out_scale: torch.Tensor,
) -> torch.Tensor:
    from pipeline.diffusion.geglu_float8_kernel import geglu_gemm

    return geglu_gemm(x.contiguous(), weight.contiguous(), input_scale, weight_scale, bias, out_scale)


def _static(layer: Any) -> bool:
    return type(layer) is Float8Linear and layer.scaling == "static"


def fusable(feed_forward: Any) -> bool:
    """Whether ``feed_forward`` (a diffusers ``FeedForward``) is a GEGLU, no dropout and a second layer, both layers
    static FP8 ones (``float8.use_float8_linears(..., scaling="static")``), the projection with a bias."""
    net = getattr(feed_forward, "net", None)
    if type(feed_forward).__name__ != "FeedForward" or not isinstance(net, nn.ModuleList) or len(net) != 3:
        return False
    entry, dropout, out = net
    projection: Any = getattr(entry, "proj", None)
    return (
        isinstance(entry, GEGLU)
        and _static(projection)
        and projection.bias is not None
        and isinstance(dropout, nn.Dropout)
        and dropout.p == 0
        and _static(out)
        and out.in_features == projection.out_features // 2
    )


def use_fused_feed_forwards(unet: Any, *, enabled: bool = True) -> int:
    """Render each fusable feed-forward of ``unet`` through ``headshot::geglu_float8`` (``enabled=False``: no
    longer); return how many changed. After converting its linears to static FP8 and before any compile (a
    compiled block keeps the forward it traced); training keeps diffusers' forward."""
    return switch_fused(unet, calls=RENDER, enabled=enabled, methods=("forward",), fusable=fusable, fuse=_fused)


def _fused(feed_forward: Any, fused: set[str]) -> dict[str, Any]:
    eager = feed_forward.forward  # the class's, bound
    projection, out = feed_forward.net[0].proj, feed_forward.net[2]

    def forward(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        ready = all(layer.calibrated and not layer.calibrating for layer in (projection, out))
        if not (wanted(fused) and ready):
            return eager(hidden_states, *args, **kwargs)
        gated = torch.ops.headshot.geglu_float8(
            projection.cast_input(hidden_states),
            projection.weight_fp8,
            projection.input_scale,
            projection.weight_scale,
            projection.bias,
            out.input_scale,
        )
        product = out.quantized_product(gated, hidden_states.dtype)
        return product.reshape(*hidden_states.shape[:-1], out.out_features)

    return {"forward": forward}
