"""A UNet's transformers entering and leaving their tokens through ``pipeline.diffusion.token_layout``'s operators
(``pipeline.diffusion.transformer_glue``): the operators and their gradients compute torch's norm, permutes and add,
their Triton kernels the operators' maths on every element, and the tiny UNet renders and trains as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional

from bench.benchmark_unet import unet_call_inputs
from pipeline.diffusion.glue_calls import TRAIN
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.resnet_glue import use_fused_resnets
from pipeline.diffusion.transformer_glue import fusable, use_fused_transformers
from tests.pipeline.operator_calls import OperatorCalls
from tests.pipeline.triton_kernels import naming

ENTRY, EXIT = torch.ops.headshot.group_norm_tokens.default, torch.ops.headshot.tokens_to_nchw.default


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.double() - expected).norm() / expected.norm())


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-6), (torch.bfloat16, 8e-3)])
def test_the_operators_and_their_gradients_are_torchs_norm_permutes_and_add(
    dtype: torch.dtype, tolerance: float
) -> None:
    generator = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(2, 32, 6, 5, generator=generator) + 2).to(dtype)
    weight, bias = torch.randn(2, 32, generator=generator).to(dtype)
    residual = torch.randn(2, 32, 6, 5, generator=generator).to(dtype)
    grad = torch.randn(2, 32, 6, 5, generator=generator).to(dtype)
    leaves = [tensor.clone().requires_grad_(True) for tensor in (x, weight, bias, residual)]
    tokens, mean, rstd = torch.ops.headshot.group_norm_tokens(leaves[0], leaves[1], leaves[2], 8, 1e-5)
    assert tokens.shape == (2, 30, 32) and tokens.is_contiguous() and tokens.dtype == dtype
    assert mean.shape == rstd.shape == (2, 8)
    out = torch.ops.headshot.tokens_to_nchw(tokens, leaves[3], 6, 5)
    assert out.shape == x.shape and out.is_contiguous() and out.dtype == dtype
    out.backward(grad)
    references = [tensor.double().requires_grad_(True) for tensor in (x, weight, bias, residual)]
    normed = functional.group_norm(references[0], 8, references[1], references[2], 1e-5)
    expected = _tokens(normed).reshape(2, 6, 5, 32).permute(0, 3, 1, 2) + references[3]
    expected.backward(grad.double())
    assert _relative(tokens.detach(), _tokens(normed).detach()) < tolerance
    assert _relative(out.detach(), expected.detach()) < tolerance
    for name, mine, reference in zip(("x", "weight", "bias", "residual"), leaves, references, strict=True):
        assert mine.grad is not None and reference.grad is not None and mine.grad.dtype == dtype, name
        assert _relative(mine.grad, reference.grad) < tolerance, name
    # A residual of another dtype promotes the sum as torch's add does.
    mixed = torch.ops.headshot.tokens_to_nchw(_tokens(x).contiguous(), residual.double(), 6, 5)
    assert mixed.dtype == torch.float64
    torch.testing.assert_close(mixed, x.double() + residual.double(), rtol=0, atol=0)
    # The plain transpose, and its gradient the transpose back.
    leaf = x.clone().requires_grad_(True)
    plain = torch.ops.headshot.nchw_to_tokens(leaf)
    torch.testing.assert_close(plain, _tokens(x), rtol=0, atol=0)
    plain.backward(_tokens(grad))
    torch.testing.assert_close(leaf.grad, grad, rtol=0, atol=0)


def test_the_triton_kernels_compute_the_operators_maths_on_every_element(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    # Tiles of 16 channels by 8 pixels, the norm's chunks of 64 pixels and combining windows of 16 partial results.
    small = {"TILE_CHANNELS": 16, "TILE_PIXELS": 8, "BLOCK": 64, "PARTIALS": 16}
    kernels = triton_kernels("token_layout_kernel", small)
    channels, pixels = kernels.tiles["TILE_CHANNELS"], kernels.tiles["TILE_PIXELS"]
    generator = torch.Generator(device=kernels.device).manual_seed(2)
    cases = {
        "one partial tile each way": ((3, channels // 2, 1, pixels - 3), 4),
        "several tiles each way, the last partial; several norm chunks": ((2, 2 * channels + 8, 9, 15), 8),
    }
    inputs, calls = [], []
    for shape, groups in cases.values():
        x = (3 * torch.randn(shape, device=kernels.device, generator=generator) + 5).bfloat16()
        weight, bias = torch.randn(2, shape[1], device=kernels.device, generator=generator).bfloat16()
        residual = torch.randn(shape, device=kernels.device, generator=generator).bfloat16()
        tokens = _tokens(torch.randn(shape, device=kernels.device, generator=generator)).bfloat16().contiguous()
        inputs.append((x, weight, bias, residual, tokens, groups))
        calls.append(("group_norm_to_tokens", (x, weight, bias, groups, 1e-5)))
        calls.append(("nchw_to_tokens", (x,)))
        calls.append(("tokens_to_nchw", (tokens, residual, shape[2], shape[3])))
        calls.append(("tokens_to_nchw", (tokens, None, shape[2], shape[3])))
    results = kernels.run(calls)
    for index, (case, (x, weight, bias, residual, tokens, groups)) in enumerate(zip(cases, inputs, strict=True)):
        normed, transposed, added, back = results[4 * index : 4 * index + 4]
        cpu = [tensor.cpu() for tensor in (x, weight, bias, residual, tokens)]
        maths = torch.ops.headshot.group_norm_tokens(cpu[0], cpu[1], cpu[2], groups, 1e-5)
        torch.testing.assert_close(normed[0].cpu(), maths[0], rtol=1.6e-2, atol=2e-2, msg=naming(case))
        torch.testing.assert_close(normed[1].cpu(), maths[1], rtol=1e-5, atol=1e-5, msg=naming(case))
        torch.testing.assert_close(normed[2].cpu(), maths[2], rtol=1e-4, atol=0, msg=naming(case))
        # The moves are exact; the add within one bf16 rounding (the interpreter's float32-to-bf16 cast does not
        # round to nearest as a GPU's and torch's do).
        torch.testing.assert_close(transposed.cpu(), _tokens(cpu[0]), rtol=0, atol=0, msg=naming(case))
        height, width = x.shape[2:]
        nchw = cpu[4].reshape(x.shape[0], height, width, -1).permute(0, 3, 1, 2)
        torch.testing.assert_close(added.cpu(), nchw + cpu[3], rtol=8e-3, atol=8e-3, msg=naming(case))
        torch.testing.assert_close(back.cpu(), nchw.contiguous(), rtol=0, atol=0, msg=naming(case))
        assert all(result.is_contiguous() for result in (normed[0], transposed, added, back)), case


def test_the_tiny_unet_renders_and_trains_the_same_through_the_fused_transformers(
    model_cache: Path, tiny_lora_gradient: tuple[Any, Callable[[], torch.Tensor]]
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    unet, inputs = pipe.unet, unet_call_inputs(pipe, batch=2)
    transformers = [module for module in unet.modules() if type(module).__name__ == "Transformer2DModel"]
    assert transformers and all(fusable(module) for module in transformers)
    with torch.no_grad():
        reference = unet(**inputs).sample
    assert use_fused_transformers(unet) == len(transformers) and use_fused_transformers(unet) == 0
    with torch.no_grad(), OperatorCalls() as calls:
        rendered = unet(**inputs).sample
    assert calls.operators.count(ENTRY) == calls.operators.count(EXIT) == len(transformers)
    torch.testing.assert_close(rendered, reference, rtol=1e-4, atol=1e-5)  # float32: the same maths, reordered
    # Beside the fused ResNet blocks, each kind switches only its own modules' methods.
    assert use_fused_resnets(unet) > 0 and use_fused_resnets(unet, enabled=False) > 0
    with torch.no_grad(), OperatorCalls() as calls:
        unet(**inputs)
    assert calls.operators.count(ENTRY) == len(transformers)
    assert use_fused_transformers(unet, enabled=False) == len(transformers)
    assert not any(name.startswith("_") and callable(value) for t in transformers for name, value in vars(t).items())
    # Training, with a LoRA: the same gradient through the fused entries and exits, their backwards run.
    trained, gradient = tiny_lora_gradient
    plain = gradient()
    assert use_fused_transformers(trained, calls=TRAIN) == len(transformers)
    with OperatorCalls() as calls:
        fused = gradient()
    assert calls.operators.count(ENTRY) == len(transformers)
    assert torch.ops.headshot.nchw_to_tokens.default in calls.operators  # the exit's backward
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-7)


def test_a_channels_last_unet_adds_its_transformers_tokens_to_the_residual_without_a_copy_into_nchw(
    model_cache: Path,
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    unet, inputs = pipe.unet.to(memory_format=torch.channels_last), unet_call_inputs(pipe, batch=2)
    transformers = [module for module in unet.modules() if type(module).__name__ == "Transformer2DModel"]
    outputs: list[torch.Tensor] = []
    for transformer in transformers:
        transformer.register_forward_hook(lambda _module, _args, output: outputs.append(output[0]))
    with torch.no_grad(), OperatorCalls() as calls:
        reference = unet(**inputs).sample
    copies = calls.operators.count(torch.ops.aten.clone.default)
    assert use_fused_transformers(unet) == len(transformers)
    outputs.clear()
    with torch.no_grad(), OperatorCalls() as calls:
        rendered = unet(**inputs).sample
    # The same add of the same values; the layers after it sum in another order over a channels-last input.
    torch.testing.assert_close(rendered, reference, rtol=1e-4, atol=1e-5)
    assert ENTRY not in calls.operators and EXIT not in calls.operators  # the tokens are the layout: no operator
    assert copies >= len(transformers)  # diffusers' exits copy into NCHW (.contiguous)
    # At least those copies fewer (on this CPU also the ones a layer after an NCHW exit made back to channels-last).
    assert calls.operators.count(torch.ops.aten.clone.default) <= copies - len(transformers)
    assert all(output.is_contiguous(memory_format=torch.channels_last) for output in outputs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels need a CUDA GPU")
def test_the_operators_replay_from_a_cuda_graph(
    replays_new_inputs: Callable[[Callable[[], torch.Tensor], Callable[[], None]], None],
) -> None:
    # A render's first transformer level as a worker replays it: CFG batch 8, 640 channels at 928x1152's 58x72.
    x = torch.randn(8, 640, 72, 58, device="cuda", dtype=torch.bfloat16).requires_grad_(True)
    weight, bias = torch.randn(2, 640, device="cuda", dtype=torch.bfloat16)
    grad = torch.randn(x.shape, device="cuda", dtype=torch.bfloat16)

    def step() -> torch.Tensor:
        x.grad = None
        tokens = torch.ops.headshot.group_norm_tokens(x, weight, bias, 32, 1e-6)[0]
        torch.ops.headshot.tokens_to_nchw(tokens, x, 72, 58).backward(grad)
        assert x.grad is not None
        return x.grad

    replays_new_inputs(step, lambda: x.mul_(-1).add_(1))
