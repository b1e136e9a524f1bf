"""Training a LoRA on a base whose transformer linears are FP8 layers (``pipeline.diffusion.float8``): the frozen
base's products in FP8 both ways, and the scales that keep the casts from needing a reduction first.

A LoRA's base never trains, so a base layer has no weight gradient: its forward product and its backward product to
the input are all it multiplies, and both can run on FP8 tensor cores from the layer's FP8 weight (and a transposed
copy of it for the backward). Scaling each input and each gradient by its own largest value takes a reduction over
it before the cast; on an H200 those cost what the products saved (BENCHMARKS.md, 2026-12-03 sixth session). So the
inputs take the scales rendering calibrates (``float8_scales.calibrate_float8``), and the gradients scales
calibrated here, the way fp16 training once used a fixed loss scale: e5m2 has fp16's exponent range (about 30 binary
orders of magnitude), so a scale with generous headroom over the largest gradient seen neither clips nor loses what
matters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pipeline.diffusion.float8 import FLOAT8, GRADIENT_FLOAT8, Float8Linear, refresh_float8, scale_for
from pipeline.diffusion.float8_scales import static_layers

__all__ = ["GRADIENT_HEADROOM", "calibrate_float8_gradients", "use_float8_training"]

# A gradient scale maps the largest gradient calibration saw times this to e5m2's largest value. Gradients move with
# the batch's content, its size and the timestep; 16x leaves room for that and still keeps 26 of e5m2's ~30 binary
# orders below it, far more than one tensor's gradients span.
GRADIENT_HEADROOM = 16.0


def use_float8_training(unet: Any) -> int:
    """Make ``unet``'s FP8 layers with one scale per weight (``scaling="static"``) train in FP8 too: with gradients on,
    a frozen base layer's forward and its backward to the input multiply in FP8 (a LoRA on top trains as before).
    Keeps a transposed FP8 copy of each weight (the backward's operand), refreshed with the other; returns how many
    layers. Layers with one scale per row train in bf16 (a row scale cannot apply along the backward's sum).
    """
    layers = _static_linears(unet)
    for layer in layers:
        if not layer.trains_in_float8:
            layer.weight_fp8_t = torch.empty(
                layer.in_features, layer.out_features, dtype=FLOAT8, device=layer.weight_fp8.device
            )
    refresh_float8(layers)
    return len(layers)


def calibrate_float8_gradients(unet: Any, run: Callable[[], object], *, headroom: float = GRADIENT_HEADROOM) -> int:
    """Fix the output-gradient scale of every layer of ``unet`` that trains in FP8 from what ``run`` (a few training
    calls: forward and backward) sends back through it; return how many layers were calibrated.

    While ``run`` runs, those layers scale each gradient by its own largest value and record it; each then maps that
    times ``headroom`` to e5m2's largest value. A layer no gradient reached keeps scaling by its own largest value:
    autograd runs no backward for a layer before the first trained weight (nothing there needs a gradient). Call it
    before compiling (the recording backward is another graph). Raises ``ValueError`` when ``run`` reached none.
    """
    layers = [layer for layer in _static_linears(unet) if layer.trains_in_float8]
    for layer in layers:
        layer.gradient_max.zero_()
        layer.calibrating_gradients = True
    try:
        run()
    finally:
        for layer in layers:
            layer.calibrating_gradients = False
    reached = [layer for layer in layers if layer.gradient_max > 0]
    if layers and not reached:
        raise ValueError(
            f"FP8 gradient calibration reached none of the {len(layers)} layers that train in FP8; calibrate with "
            "training calls that run the model forward and backward to a trained weight (a LoRA)."
        )
    for layer in reached:
        layer.gradient_scale.copy_(scale_for(layer.gradient_max * headroom, GRADIENT_FLOAT8))
        layer.gradients_calibrated = True
    return len(reached)


def _static_linears(unet: Any) -> list[Float8Linear]:
    """``unet``'s static FP8 linears: the layers that can train in FP8 (``float8_conv``'s convolutions render only)."""
    return [layer for layer in static_layers(unet).values() if isinstance(layer, Float8Linear)]
