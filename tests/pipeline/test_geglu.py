"""SDXL's feed-forward gate trained through ``headshot::geglu``: diffusers' outputs, autograd's gradients.

The references are diffusers' own GEGLU maths under autograd in float64. On a CPU machine the operators run their
torch maths (and inductor compiles around them), and the Triton kernels behind them run in Triton's interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from diffusers.models.activations import GEGLU
from torch.nn import functional

from pipeline.diffusion.geglu import OneOperatorGEGLU, use_geglu_operator
from tests.pipeline.triton_kernels import naming

on_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels need a CUDA GPU")


def _diffusers_maths(projected: torch.Tensor) -> torch.Tensor:
    value, gate = projected.chunk(2, dim=-1)
    return value * functional.gelu(gate)


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.double() - expected).norm() / expected.norm())


def _against_float64(projected: torch.Tensor, grad: torch.Tensor) -> tuple[float, float]:
    """Relative errors of ``headshot::geglu``'s output and gradient against diffusers' maths in float64."""
    reference = projected.detach().double().requires_grad_(True)
    expected = _diffusers_maths(reference)
    expected.backward(grad.double())
    ours = projected.detach().clone().requires_grad_(True)
    out = torch.ops.headshot.geglu(ours)
    out.backward(grad)
    assert ours.grad is not None and reference.grad is not None
    return _relative(out.detach(), expected.detach()), _relative(ours.grad, reference.grad)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-6), (torch.bfloat16, 8e-3)])
def test_the_operator_and_its_gradient_match_diffusers_maths(dtype: torch.dtype, tolerance: float) -> None:
    generator = torch.Generator().manual_seed(0)
    projected = (2 * torch.randn(3, 7, 2 * 40, generator=generator)).to(dtype)
    grad = torch.randn(3, 7, 40, generator=generator).to(dtype)
    output_error, gradient_error = _against_float64(projected, grad)
    assert output_error < tolerance
    assert gradient_error < tolerance


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_compiled_gate_trains_its_input_and_projection_as_diffusers_gate_does() -> None:
    torch.manual_seed(1)
    plain = GEGLU(24, 48)
    ours = GEGLU(24, 48)
    ours.load_state_dict(plain.state_dict())
    assert use_geglu_operator(ours) == 1 and isinstance(ours, OneOperatorGEGLU)
    compiled = torch.compile(ours, fullgraph=True)  # inductor around the operators, as a worker's blocks are
    hidden = torch.randn(2, 9, 24)
    grad = torch.randn(2, 9, 48)

    def trained(module: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        given = hidden.clone().requires_grad_(True)
        out = module(given)
        out.backward(grad)
        assert given.grad is not None
        return out.detach(), given.grad, next(m for m in module.modules() if isinstance(m, torch.nn.Linear)).weight.grad

    for expected, got in zip(trained(plain), trained(compiled), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # no gradient wanted: diffusers' maths, not the operator
        torch.testing.assert_close(compiled(hidden), plain(hidden), rtol=1e-5, atol=1e-6)
    assert use_geglu_operator(ours, enabled=False) == 1 and type(ours) is GEGLU


def test_a_lora_on_the_tiny_unet_gets_the_same_gradient_through_the_operator(
    tiny_lora_gradient: tuple[Any, Callable[[], torch.Tensor]],
) -> None:
    unet, gradient = tiny_lora_gradient
    plain = gradient()
    assert use_geglu_operator(unet) > 0
    torch.testing.assert_close(gradient(), plain, rtol=1e-4, atol=1e-7)


# The interpreter's tiles: 4 rows by 32 columns of the gate's width.
SMALL_TILES = {"ROWS": 4, "COLUMNS": 32}


def test_the_triton_kernels_compute_diffusers_maths_on_every_element(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    kernels = triton_kernels("geglu_kernel", SMALL_TILES)
    tile_rows, tile_columns = kernels.tiles["ROWS"], kernels.tiles["COLUMNS"]
    cases = {
        "partial tiles both ways": (9 * tile_rows + 1, tile_columns + 88),
        "many full tiles": (16 * tile_rows, 2 * tile_columns),
        "narrower than a tile": (5, 8),
    }
    generator = torch.Generator(device=kernels.device).manual_seed(0)
    inputs, calls = [], []
    for rows, width in cases.values():
        projected = (2 * torch.randn(rows, 2 * width, device=kernels.device, generator=generator)).bfloat16()
        grad = torch.randn(rows, width, device=kernels.device, generator=generator).bfloat16()
        inputs.append((projected.cpu(), grad.cpu()))
        calls += [("geglu_forward_rows", (projected,)), ("geglu_backward_rows", (projected, grad))]
    results = kernels.run(calls)

    for case, (projected, grad), out, projected_grad in zip(cases, inputs, results[::2], results[1::2], strict=True):
        reference = projected.double().requires_grad_(True)
        expected = _diffusers_maths(reference)
        expected.backward(grad.double())
        assert reference.grad is not None
        assert _relative(out.cpu(), expected.detach()) < 8e-3, case
        assert _relative(projected_grad.cpu(), reference.grad) < 8e-3, case
        # The same numbers as the operators' torch maths (the CPU's way), to bf16's rounding of each element.
        cpu_out, cpu_grad = torch.ops.headshot.geglu(projected), torch.ops.headshot.geglu_backward(projected, grad)
        torch.testing.assert_close(out.cpu(), cpu_out, rtol=1.6e-2, atol=1e-3, msg=naming(case))
        torch.testing.assert_close(projected_grad.cpu(), cpu_grad, rtol=1.6e-2, atol=1e-3, msg=naming(case))


@on_gpu
def test_the_operators_replay_from_a_cuda_graph(
    capture_cuda_graph: Callable[[Callable[[], torch.Tensor]], tuple[torch.Tensor, Any, torch.Tensor]],
) -> None:
    projected = torch.randn(64, 2 * 320, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(64, 320, device="cuda", dtype=torch.bfloat16)

    def step() -> torch.Tensor:
        projected.grad = None
        torch.ops.headshot.geglu(projected).backward(grad)
        assert projected.grad is not None
        return projected.grad

    expected, graph, replayed = capture_cuda_graph(step)
    with torch.no_grad():
        projected.mul_(-1)
    graph.replay()
    torch.testing.assert_close(replayed, step())
    assert not torch.equal(replayed, expected)
