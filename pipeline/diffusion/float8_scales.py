"""The input scales of static FP8 layers (``float8``): calibrated on a few renders, and kept on disk so a restarted
worker reuses them instead of calibrating again.

Calibration (``calibrate_float8``) renders every look eagerly: one look at a time, with decodes, that was about 20 s
of an H200 worker's cold start (BENCHMARKS.md, 2026-12-03 fourth session); ``serving.calibrate_float8_on_looks`` now
denoises them in batches. It gives the same scales for the same weights and the same renders. The kept file
records the calibration recipe (what was rendered) and every static layer's weight scale beside its input
scale; it is used only when the recipe is the same and every weight scale equals the model's to the bit, so another
checkpoint, or new weights under the same name, is calibrated afresh. It is written whole or not at all (a temporary
file renamed), since workers sharing one cache volume may start together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipeline.diffusion.float8 import Float8Linear, scale_for
from pipeline.diffusion.float8_conv import Float8Conv2d

Float8Layer = Float8Linear | Float8Conv2d

__all__ = ["CALIBRATION_HEADROOM", "calibrate_float8", "load_input_scales", "save_input_scales", "static_layers"]

FORMAT = 1
# A static input scale maps the calibrated maximum times this to FP8's largest value: a user's LoRA and prompts the
# calibration did not see move the activations a little, and clipping costs more than the 0.3 bit of resolution this
# gives up.
CALIBRATION_HEADROOM = 1.25


def _stacked(layers: dict[str, Float8Layer], buffer: str) -> list[float]:
    """One buffer of every layer, read back in one copy (not one device sync per layer); a convolution's weight
    scales (one an out channel) by their largest."""
    return torch.stack([getattr(layer, buffer).amax() for layer in layers.values()]).tolist()


def save_input_scales(unet: Any, path: Path, *, recipe: str) -> None:
    """Write the calibrated scales of ``unet``'s static FP8 layers to ``path`` for ``load_input_scales``."""
    layers = static_layers(unet)
    uncalibrated = [name for name, layer in layers.items() if not layer.calibrated]
    if uncalibrated:
        raise ValueError(
            f"{len(uncalibrated)} FP8 layers are not calibrated ({uncalibrated[0]}, ...): calibrate before keeping."
        )
    weights, inputs = _stacked(layers, "weight_scale"), _stacked(layers, "input_scale")
    payload = {
        "format": FORMAT,
        "recipe": recipe,
        "layers": {name: [weight, scale] for name, weight, scale in zip(layers, weights, inputs, strict=True)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(payload))
    partial.replace(path)


def load_input_scales(unet: Any, path: Path, *, recipe: str) -> bool:
    """Set the input scales of ``unet``'s static FP8 layers from ``path`` and mark them calibrated; return whether
    it could: False (nothing changed) when the file is missing or unreadable, was calibrated by another recipe, or
    holds other layers or other weights."""
    layers = static_layers(unet)
    try:
        payload = json.loads(path.read_text())
        if payload["format"] != FORMAT or payload["recipe"] != recipe or list(payload["layers"]) != list(layers):
            return False
        stored = [payload["layers"][name] for name in layers]
        # JSON keeps a float32 exactly (as the float64 it widens to), so equal weights give equal scales to the bit.
        weights = torch.tensor([weight for weight, _ in stored], dtype=torch.float32)
        inputs = torch.tensor([scale for _, scale in stored], dtype=torch.float32)
    except (OSError, ValueError, TypeError, KeyError):  # missing, or not a file this module wrote
        return False
    if not layers or not torch.equal(weights, torch.tensor(_stacked(layers, "weight_scale"), dtype=torch.float32)):
        return False
    scales = inputs.to(next(iter(layers.values())).input_scale.device)
    torch._foreach_copy_([layer.input_scale for layer in layers.values()], list(scales.unbind(0)))
    for layer in layers.values():
        layer.calibrated = True
    return True


def static_layers(unet: Any) -> dict[str, Float8Layer]:
    """``unet``'s FP8 layers that scale their inputs statically (linears and ``float8_conv``'s convolutions), by name
    (the ones calibration sets)."""
    return {
        name: module
        for name, module in unet.named_modules()
        if isinstance(module, (Float8Linear, Float8Conv2d)) and module.scaling == "static"
    }


def calibrate_float8(unet: Any, run: Callable[[], object], *, headroom: float = CALIBRATION_HEADROOM) -> int:
    """Fix the input scale of every static FP8 layer of ``unet`` from what ``run`` (a few renders) feeds it; return
    how many layers were calibrated.

    While ``run`` renders, those layers multiply in bf16 and record their largest input; each then maps that times
    ``headroom`` to FP8's largest value. Call it before compiling: the calibrating forward is another graph. Raises
    ``ValueError`` naming the layers ``run`` never reached (their scale would be a guess).
    """
    layers = static_layers(unet)
    for layer in layers.values():
        layer.input_max.zero_()
        layer.calibrating = True
    try:
        with torch.no_grad():
            run()
    finally:
        for layer in layers.values():
            layer.calibrating = False
    missed = [name for name, layer in layers.items() if not layer.input_max > 0]
    if missed:
        raise ValueError(
            f"FP8 calibration never reached {len(missed)} layers ({', '.join(missed[:3])}, ...); calibrate with "
            "renders that run the whole model."
        )
    # Layers sharing one scale tensor (float8_shared_input) get their group's largest input: each member's, as they
    # read the same tensor.
    largest: dict[int, torch.Tensor] = {}
    for layer in layers.values():
        key = id(layer.input_scale)
        largest[key] = torch.maximum(largest[key], layer.input_max) if key in largest else layer.input_max
    for layer in layers.values():
        layer.input_scale.copy_(scale_for(largest[id(layer.input_scale)] * headroom))
        layer.calibrated = True
    return len(layers)
