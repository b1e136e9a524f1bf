"""The benchmarks' helpers around FP8 layers: an honest device check, and a way back to bf16 on the same weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from bench.benchmark_unet import unet_call_inputs
from bench.float8_layers import RenderingGroupNorm, use_bf16_linears, use_rendering_group_norms
from pipeline.diffusion.float8 import Float8Linear, use_float8_linears
from pipeline.diffusion.loading import load_base_pipeline


class _OperatorCalls(TorchDispatchMode):
    """Inside: ``operators`` lists every operator that reaches the dispatcher, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.operators: list[Any] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.operators.append(func)
        return func(*args, **(kwargs or {}))


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


def test_rendering_group_norms_run_the_operator_without_gradients_and_go_back(
    unet_call: tuple[Any, dict[str, Any], torch.Tensor],
) -> None:
    unet, inputs, reference = unet_call
    count = use_rendering_group_norms(unet)
    assert count > 0 and all(type(m) is RenderingGroupNorm for m in unet.modules() if isinstance(m, nn.GroupNorm))
    with torch.no_grad(), _OperatorCalls() as calls:
        rendered = unet(**inputs).sample
    assert calls.operators.count(torch.ops.headshot.group_norm.default) == count  # each norm once, gradients off
    torch.testing.assert_close(rendered, reference, rtol=1e-4, atol=1e-5)  # the same maths, float32 rounding
    assert use_rendering_group_norms(unet, enabled=False) == count
    assert all(type(m) is nn.GroupNorm for m in unet.modules() if isinstance(m, nn.GroupNorm))
