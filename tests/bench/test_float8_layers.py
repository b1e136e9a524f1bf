"""The benchmarks' helpers around FP8 layers: an honest device check, and a way back to bf16 on the same weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bench.benchmark_unet import unet_call_inputs
from bench.float8_layers import use_bf16_linears
from pipeline.diffusion.float8 import Float8Linear, use_float8_linears
from pipeline.diffusion.loading import load_base_pipeline


@pytest.fixture
def unet_call(model_cache: Path) -> tuple[Any, dict[str, Any], torch.Tensor]:
    """A fresh tiny UNet (the tests change its layers), one call's inputs and that call's output as built."""
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    inputs = unet_call_inputs(pipe, batch=2)
    with torch.no_grad():
        reference = pipe.unet(**inputs).sample
    return pipe.unet, inputs, reference


def test_converting_back_gives_plain_layers_on_the_same_weights_and_the_same_output(
    unet_call: tuple[Any, dict[str, Any], torch.Tensor],
) -> None:
    unet, inputs, reference = unet_call
    converted = use_float8_linears(unet)

    # Plain layers on the very same weights, so the bf16 output returns bit for bit.
    weights = {name: module.weight for name, module in unet.named_modules() if isinstance(module, Float8Linear)}
    assert use_bf16_linears(unet) == converted > 0
    assert not any(isinstance(module, Float8Linear) for module in unet.modules())
    assert all(type(unet.get_submodule(name)) is nn.Linear for name in weights)
    assert all(unet.get_submodule(name).weight is weight for name, weight in weights.items())
    with torch.no_grad():
        assert torch.equal(unet(**inputs).sample, reference)
