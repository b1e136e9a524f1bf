"""A render's ResNet blocks through ``headshot::group_norm_silu`` (``pipeline.diffusion.resnet_glue``): the tiny
UNet renders what diffusers' forward renders, trains exactly as before, and the operator's maths and its Triton
kernels compute torch's norm, add and SiLU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional

from bench.benchmark_unet import unet_call_inputs
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.resnet_glue import fusable, use_fused_resnets
from tests.pipeline.operator_calls import OperatorCalls
from tests.pipeline.triton_kernels import naming


def _reference(
    x: torch.Tensor, shift: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor, groups: int
) -> Any:
    """torch's norm, add and SiLU in float64, as diffusers' ResNet block runs them."""
    value = x.double() if shift is None else x.double() + shift.double()[:, :, None, None]
    return functional.silu(functional.group_norm(value, groups, weight.double(), bias.double(), 1e-5))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shifted", [False, True])
def test_the_operators_maths_are_torchs_norm_add_and_silu(layout: torch.memory_format, shifted: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(2, 32, 6, 5, generator=generator) + 2).bfloat16().contiguous(memory_format=layout)
    shift = torch.randn(2, 32, generator=generator).bfloat16() if shifted else None
    weight, bias = torch.randn(2, 32, generator=generator)
    out = torch.ops.headshot.group_norm_silu(x, shift, weight, bias, 8, 1e-5)
    assert out.dtype == x.dtype and out.is_contiguous(memory_format=layout)
    expected = _reference(x, shift, weight, bias, 8)
    torch.testing.assert_close(out.double(), expected, rtol=1.6e-2, atol=1e-2)


def test_the_triton_kernels_compute_the_operators_maths_on_every_element(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    kernels = triton_kernels("group_norm_kernel", {"BLOCK": 64, "PARTIALS": 16})
    block = kernels.tiles["BLOCK"]
    generator = torch.Generator(device=kernels.device).manual_seed(1)
    cases = {
        "fewer pixels than a chunk, no shift": ((3, 16, 1, block - 1), 8, False),
        "several chunks a channel, the last partial, shifted": ((2, 16, 2, block + 7), 8, True),
    }
    inputs, calls = [], []
    for shape, groups, shifted in cases.values():
        x = (3 * torch.randn(shape, device=kernels.device, generator=generator) + 5).bfloat16()
        weight, bias = torch.randn(2, shape[1], device=kernels.device, generator=generator).bfloat16()
        shift = torch.randn(shape[:2], device=kernels.device, generator=generator).bfloat16() if shifted else None
        inputs.append((x, shift, weight, bias, groups))
        calls.append(("group_norm_act_nchw", (x, shift, weight, bias, groups, 1e-5)))
    for case, (x, shift, weight, bias, groups), out in zip(cases, inputs, kernels.run(calls), strict=True):
        assert out.dtype == x.dtype and out.is_contiguous(), case
        cpu = [None if t is None else t.cpu() for t in (x, shift, weight, bias)]
        maths = torch.ops.headshot.group_norm_silu(*cpu, groups, 1e-5)
        torch.testing.assert_close(out.cpu(), maths, rtol=1.6e-2, atol=2e-2, msg=naming(case))
        expected = _reference(*cpu, groups)
        assert float((out.cpu().double() - expected).norm() / expected.norm()) < 8e-3, case


def test_the_tiny_unet_renders_the_same_through_the_fused_blocks_and_trains_as_before(model_cache: Path) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    unet, inputs = pipe.unet, unet_call_inputs(pipe, batch=2)
    blocks = [module for module in unet.modules() if type(module).__name__ == "ResnetBlock2D"]
    with torch.no_grad():
        reference = unet(**inputs).sample
    unet.train()
    trained = unet(**inputs).sample
    unet.eval()
    # Every ResNet block of the down, mid and up blocks has the structure (the samplers are modules of their own).
    assert blocks and all(fusable(block) for block in blocks)
    assert use_fused_resnets(unet) == len(blocks) and use_fused_resnets(unet) == 0  # once each
    with torch.no_grad(), OperatorCalls() as calls:
        rendered = unet(**inputs).sample
    assert calls.operators.count(torch.ops.headshot.group_norm_silu.default) == 2 * len(blocks)
    torch.testing.assert_close(rendered, reference, rtol=1e-4, atol=1e-5)  # float32: the same maths, reordered
    # With gradients on (training), diffusers' forward: the same graph of operators and the same numbers.
    unet.train()
    with OperatorCalls() as calls:
        again = unet(**inputs).sample
    unet.eval()
    assert torch.ops.headshot.group_norm_silu.default not in calls.operators
    torch.testing.assert_close(again, trained, rtol=0, atol=0)
    assert use_fused_resnets(unet, enabled=False) == len(blocks)
    assert not any("forward" in vars(block) for block in blocks)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels need a CUDA GPU")
def test_the_fused_operator_replays_from_a_cuda_graph(
    capture_cuda_graph: Callable[[Callable[[], torch.Tensor]], tuple[torch.Tensor, Any, torch.Tensor]],
) -> None:
    # A render's norm as a worker replays it: CFG batch 8, 320 channels, the time embedding's shift per sample.
    x = torch.randn(8, 320, 36, 29, device="cuda", dtype=torch.bfloat16)
    shift = torch.randn(8, 320, device="cuda", dtype=torch.bfloat16)
    weight, bias = torch.randn(2, 320, device="cuda", dtype=torch.bfloat16)

    def step() -> torch.Tensor:
        with torch.no_grad():
            return torch.ops.headshot.group_norm_silu(x, shift, weight, bias, 32, 1e-5)

    expected, graph, replayed = capture_cuda_graph(step)
    torch.testing.assert_close(expected.double(), _reference(x, shift, weight, bias, 32), rtol=1.6e-2, atol=1e-2)
    x.mul_(-1).add_(1)
    shift.mul_(2)
    graph.replay()
    torch.testing.assert_close(replayed, step())
    assert not torch.equal(replayed, expected)
