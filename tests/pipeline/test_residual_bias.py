"""A ResNet block's residual add with its convolutions' biases (``headshot::add_residual_bias``): the operator's
maths and gradients are torch's two adds, and its Triton kernel computes them on every element of either layout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from pipeline.diffusion import residual_bias as _registers_the_operator  # noqa: F401  # headshot::add_residual_bias
from tests.pipeline.triton_kernels import naming


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.double() - expected).norm() / expected.norm())


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-7), (torch.bfloat16, 4e-3)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_operators_maths_and_gradients_are_torchs_two_adds(
    layout: torch.memory_format, dtype: torch.dtype, tolerance: float
) -> None:
    generator = torch.Generator().manual_seed(0)
    x, residual, grad = (
        torch.randn(2, 24, 5, 7, generator=generator).to(dtype).contiguous(memory_format=layout) for _ in range(3)
    )
    bias = torch.randn(24, generator=generator)
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, residual, bias)]
    out = torch.ops.headshot.add_residual_bias(*leaves)
    assert out.dtype == dtype and out.is_contiguous(memory_format=layout)
    out.backward(grad)
    references = [t.detach().double().requires_grad_(True) for t in (x, residual, bias)]
    expected = references[0] + references[1] + references[2][:, None, None]
    expected.backward(grad.double())
    assert _relative(out.detach(), expected.detach()) < tolerance
    for name, mine, reference in zip(("x", "residual", "bias"), leaves, references, strict=True):
        assert mine.grad is not None and reference.grad is not None, name
        assert mine.grad.dtype == mine.dtype and _relative(mine.grad, reference.grad) < tolerance, name
    assert leaves[0].grad is not None and leaves[0].grad.is_contiguous(memory_format=layout)


def test_the_triton_kernel_adds_on_every_element_of_either_layout(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    kernels = triton_kernels("residual_bias_kernel", {"TILE_ROWS": 4, "TILE_COLUMNS": 8})
    rows, columns = kernels.tiles["TILE_ROWS"], kernels.tiles["TILE_COLUMNS"]
    # Partial tiles on both axes in each layout: channels and pixels no multiple of the tile's.
    cases = {
        "nchw": ((3, rows + 1, 2, columns + 3), torch.contiguous_format),
        "nhwc": ((2, columns + 5, 3, rows - 1), torch.channels_last),
    }
    generator = torch.Generator(device=kernels.device).manual_seed(1)
    calls, inputs = [], []
    for layout, (shape, memory) in cases.items():
        x, residual = (
            (4 * torch.randn(shape, device=kernels.device, generator=generator)).bfloat16() for _ in range(2)
        )
        x, residual = x.contiguous(memory_format=memory), residual.contiguous(memory_format=memory)
        bias = torch.randn(shape[1], device=kernels.device, generator=generator)
        calls.append(("add_residual_bias", (x, residual, bias, layout == "nhwc")))
        inputs.append((x.cpu(), residual.cpu(), bias.cpu(), memory))
    for case, out, (x, residual, bias, memory) in zip(cases, kernels.run(calls), inputs, strict=True):
        assert out.dtype == x.dtype and out.is_contiguous(memory_format=memory), case
        maths = torch.ops.headshot.add_residual_bias(x, residual, bias)  # the same float32 sum, rounded once
        if not kernels.interpreted:
            torch.testing.assert_close(out.cpu(), maths, rtol=0, atol=0, msg=naming(case))
            continue
        # The interpreter's float32-to-bf16 cast truncates where a GPU's and torch's round to nearest: within one
        # bf16 step (2**-7 of the value) of the exact sum, where a wrong channel's bias would miss by ~1.
        exact = x.float() + residual.float() + bias[:, None, None]
        assert bool(((out.cpu().float() - exact).abs() <= exact.abs() * 2**-7).all()), case
