"""A UNet's ResNet blocks through ``headshot::group_norm_silu`` (``pipeline.diffusion.resnet_glue``): the tiny
UNet renders what diffusers' forward renders and, when asked, trains a LoRA to the same gradient (else exactly as
before), and the operator's maths, its gradients and its Triton kernels compute torch's norm, add and SiLU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional

from bench.benchmark_unet import unet_call_inputs
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.resnet_glue import TRAIN, _without_bias, fusable, use_fused_resnets
from tests.pipeline.operator_calls import OperatorCalls
from tests.pipeline.triton_kernels import naming


def _reference(
    x: torch.Tensor, shift: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor, groups: int
) -> Any:
    """torch's norm, add and SiLU in float64, as diffusers' ResNet block runs them."""
    value = x.double() if shift is None else x.double() + shift.double()[:, :, None, None]
    return functional.silu(functional.group_norm(value, groups, weight.double(), bias.double(), 1e-5))


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.double() - expected).norm() / expected.norm())


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-6), (torch.bfloat16, 8e-3)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shifted", [False, True])
def test_the_operators_maths_and_gradients_are_torchs_norm_add_and_silu(
    layout: torch.memory_format, shifted: bool, dtype: torch.dtype, tolerance: float
) -> None:
    generator = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(2, 32, 6, 5, generator=generator) + 2).to(dtype).contiguous(memory_format=layout)
    shift = torch.randn(2, 32, generator=generator).to(dtype) if shifted else None
    weight, bias = torch.randn(2, 32, generator=generator).to(dtype)
    grad = torch.randn(x.shape, generator=generator).to(dtype).contiguous(memory_format=layout)
    leaves = [None if t is None else t.detach().clone().requires_grad_(True) for t in (x, shift, weight, bias)]
    out, mean, rstd = torch.ops.headshot.group_norm_silu(*leaves, 8, 1e-5)
    assert out.dtype == x.dtype and out.is_contiguous(memory_format=layout)
    assert mean.shape == rstd.shape == (2, 8) and not (mean.requires_grad or rstd.requires_grad)
    out.backward(grad)
    references = [None if t is None else t.detach().double().requires_grad_(True) for t in (x, shift, weight, bias)]
    expected = _reference(*references, 8)  # type: ignore[arg-type]
    expected.backward(grad.double())
    assert _relative(out.detach(), expected.detach()) < tolerance
    for name, mine, reference in zip(("x", "shift", "weight", "bias"), leaves, references, strict=True):
        if mine is None or reference is None:
            continue
        assert mine.grad is not None and reference.grad is not None and mine.grad.dtype == dtype, name
        assert _relative(mine.grad, reference.grad) < tolerance, name
    assert leaves[0] is not None and leaves[0].grad is not None
    assert leaves[0].grad.is_contiguous(memory_format=layout)


# Each layout's kernels at the interpreter's small tiles: NCHW chunks of 64 pixels a channel; NHWC tiles of 8 pixels by
# 16 channels, chunks of 2 tiles. Both combine windows of 16 partial results.
LAYOUT_KERNELS = {
    "nchw": ("group_norm_kernel", {"BLOCK": 64, "PARTIALS": 16}, torch.contiguous_format),
    "nhwc": (
        "group_norm_nhwc_kernel",
        {"TILE_PIXELS": 8, "TILE_CHANNELS": 16, "CHUNK_TILES": 2, "PARTIALS": 16},
        torch.channels_last,
    ),
}


@pytest.mark.parametrize("layout", LAYOUT_KERNELS)
def test_the_triton_kernels_compute_the_operators_maths_on_every_element(
    triton_kernels: Callable[[str, dict[str, int]], Any], layout: str
) -> None:
    module, small, memory = LAYOUT_KERNELS[layout]
    kernels = triton_kernels(module, small)
    if layout == "nchw":
        block = kernels.tiles["BLOCK"]
        cases = {
            "fewer pixels than a chunk, no shift": ((3, 16, 1, block - 1), 8, False),
            "several chunks a channel, the last partial, shifted": ((2, 16, 2, block + 7), 8, True),
        }
    else:
        pixels, channels = kernels.tiles["TILE_PIXELS"], kernels.tiles["TILE_CHANNELS"]
        chunk = pixels * kernels.tiles["CHUNK_TILES"]
        cases = {
            "fewer pixels and channels than a tile, no shift": ((3, channels // 2, 1, pixels - 3), 4, False),
            # The last chunk short, the second channel tile partial, groups straddling the channel tiles.
            "several chunks, channels over two tiles, shifted": ((2, channels + 8, 1, 2 * chunk + pixels - 1), 8, True),
        }
    generator = torch.Generator(device=kernels.device).manual_seed(1)
    inputs, calls = [], []
    for shape, groups, shifted in cases.values():
        x = (3 * torch.randn(shape, device=kernels.device, generator=generator) + 5).bfloat16()
        x = x.contiguous(memory_format=memory)
        weight, bias = torch.randn(2, shape[1], device=kernels.device, generator=generator).bfloat16()
        weight = 1 + weight / 2  # near 1, as trained norms' scales are, and not cancelling over a group
        shift = torch.randn(shape[:2], device=kernels.device, generator=generator).bfloat16() if shifted else None
        # Off-centre, leaning on x: the group means the backward subtracts are large enough to be checked.
        grad = (torch.randn(shape, device=kernels.device, generator=generator) + 0.5 * x.float()).bfloat16()
        grad = grad.contiguous(memory_format=memory)
        cpu = [None if t is None else t.cpu() for t in (x, shift, weight, bias)]
        maths = torch.ops.headshot.group_norm_silu(*cpu, groups, 1e-5)
        mean, rstd = (moment.to(kernels.device) for moment in maths[1:])
        inputs.append((cpu, grad.cpu(), groups, maths))
        calls.append((f"group_norm_act_{layout}", (x, shift, weight, bias, groups, 1e-5)))
        calls.append((f"group_norm_act_backward_{layout}", (grad, x, shift, weight, bias, mean, rstd, groups)))
    results = kernels.run(calls)
    for case, (cpu, grad, groups, maths), (out, mean, rstd), input_grad in zip(
        cases, inputs, results[::2], results[1::2], strict=True
    ):
        x = cpu[0]
        assert out.dtype == input_grad.dtype == x.dtype, case
        assert out.is_contiguous(memory_format=memory) and input_grad.is_contiguous(memory_format=memory), case
        torch.testing.assert_close(out.cpu(), maths[0], rtol=1.6e-2, atol=2e-2, msg=naming(case))
        torch.testing.assert_close(mean.cpu(), maths[1], rtol=1e-5, atol=1e-5, msg=naming(case))
        torch.testing.assert_close(rstd.cpu(), maths[2], rtol=1e-4, atol=0, msg=naming(case))
        backward = torch.ops.headshot.group_norm_silu_backward(grad, *cpu, maths[1], maths[2], groups)
        torch.testing.assert_close(input_grad.cpu(), backward, rtol=1.6e-2, atol=2e-2, msg=naming(case))
        leaf = x.double().requires_grad_(True)
        rest = [None if t is None else t.double() for t in cpu[1:]]
        expected = _reference(leaf, *rest, groups)  # type: ignore[arg-type]
        expected.backward(grad.double())
        assert _relative(out.cpu(), expected.detach()) < 8e-3, case
        assert leaf.grad is not None and _relative(input_grad.cpu(), leaf.grad) < 8e-3, case


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_tiny_unet_renders_the_same_through_the_fused_blocks_and_trains_as_before(
    model_cache: Path, layout: torch.memory_format
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    unet, inputs = pipe.unet.to(memory_format=layout), unet_call_inputs(pipe, batch=2)
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
    # Each block's end adds its second convolution's bias (and its shortcut's) with the residual, in one operator.
    assert calls.operators.count(torch.ops.headshot.add_residual_bias.default) == len(blocks)
    torch.testing.assert_close(rendered, reference, rtol=1e-4, atol=1e-5)  # float32: the same maths, reordered
    # With gradients on (training) and only rendering fused, diffusers' forward: the same operators and numbers.
    unet.train()
    with OperatorCalls() as calls:
        again = unet(**inputs).sample
    unet.eval()
    assert torch.ops.headshot.group_norm_silu.default not in calls.operators
    torch.testing.assert_close(again, trained, rtol=0, atol=0)
    assert use_fused_resnets(unet, enabled=False) == len(blocks)
    assert not any("forward" in vars(block) for block in blocks)


def test_a_lora_on_the_tiny_unet_trains_the_same_through_the_fused_blocks(
    tiny_lora_gradient: tuple[Any, Callable[[], torch.Tensor]],
) -> None:
    unet, gradient = tiny_lora_gradient
    plain = gradient()
    blocks = [module for module in unet.modules() if type(module).__name__ == "ResnetBlock2D"]
    assert use_fused_resnets(unet, calls=TRAIN) == len(blocks)
    with OperatorCalls() as calls:
        fused = gradient()
    assert calls.operators.count(torch.ops.headshot.group_norm_silu.default) == 2 * len(blocks)
    # Backward through every norm after the first LoRA'd layer (those before it have no gradient to pass on).
    assert 0 < calls.operators.count(torch.ops.headshot.group_norm_silu_backward.default) < 2 * len(blocks)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-7)  # float32: the same maths, reordered
    # Rendering is asked for on its own; undoing training's leaves it, and undoing both leaves diffusers' forward.
    assert use_fused_resnets(unet) == len(blocks) and use_fused_resnets(unet, calls=TRAIN, enabled=False) == len(blocks)
    with OperatorCalls() as calls:
        torch.testing.assert_close(gradient(), plain, rtol=0, atol=0)
    assert torch.ops.headshot.group_norm_silu.default not in calls.operators
    assert use_fused_resnets(unet, enabled=False) == len(blocks)
    assert not any("forward" in vars(block) for block in blocks)
    with pytest.raises(ValueError, match="calls must be 'render' or 'train', got 'both'"):
        use_fused_resnets(unet, calls="both")


def test_a_lora_trains_the_same_through_the_fused_blocks_with_gradient_checkpointing(
    tiny_lora_gradient: tuple[Any, Callable[[], torch.Tensor]],
) -> None:
    # A small card's memory plan checkpoints the UNet's blocks: their forward runs again in the backward, the fused
    # blocks' with it.
    unet, gradient = tiny_lora_gradient
    unet.enable_gradient_checkpointing()
    unet.train()
    plain = gradient()
    blocks = [module for module in unet.modules() if type(module).__name__ == "ResnetBlock2D"]
    assert use_fused_resnets(unet, calls=TRAIN) == len(blocks)
    with OperatorCalls() as calls:
        fused = gradient()
    # Each block's forward twice where the backward reaches it: once in the forward, once recomputed.
    assert calls.operators.count(torch.ops.headshot.group_norm_silu.default) > 2 * len(blocks)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels need a CUDA GPU")
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_fused_operator_replays_from_a_cuda_graph(
    capture_cuda_graph: Callable[[Callable[[], torch.Tensor]], tuple[torch.Tensor, Any, torch.Tensor]],
    training: bool,
    layout: torch.memory_format,
) -> None:
    # A render's norm as a worker replays it: CFG batch 8, 320 channels, the time embedding's shift per sample;
    # training's, its input's gradient through the norm's backward. In each layout (each has kernels of its own).
    x = torch.randn(8, 320, 36, 29, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=layout)
    x.requires_grad_(training)
    shift = torch.randn(8, 320, device="cuda", dtype=torch.bfloat16)
    weight, bias = torch.randn(2, 320, device="cuda", dtype=torch.bfloat16)
    grad = torch.randn(x.shape, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=layout)

    def step() -> torch.Tensor:
        if not training:
            with torch.no_grad():
                return torch.ops.headshot.group_norm_silu(x, shift, weight, bias, 32, 1e-5)[0]
        x.grad = None
        torch.ops.headshot.group_norm_silu(x, shift, weight, bias, 32, 1e-5)[0].backward(grad)
        assert x.grad is not None
        return x.grad

    expected, graph, replayed = capture_cuda_graph(step)
    leaf = x.detach().double().requires_grad_(True)
    reference = _reference(leaf, shift, weight, bias, 32)
    if training:
        reference.backward(grad.double())
        assert leaf.grad is not None and _relative(expected, leaf.grad) < 8e-3
    else:
        torch.testing.assert_close(expected.double(), reference.detach(), rtol=1.6e-2, atol=1e-2)
    with torch.no_grad():
        x.mul_(-1).add_(1)
        shift.mul_(2)
    graph.replay()
    torch.testing.assert_close(replayed, step())
    assert not torch.equal(replayed, expected)


def test_a_blocks_convolutions_leave_their_biases_to_the_operators_after_them() -> None:
    # On CUDA torch adds a convolution's bias in a broadcasting pass of its own; the fused block gives it to the norm
    # (the first convolution's) or to the residual add (the second's and the shortcut's) instead: the same sum.
    generator = torch.Generator().manual_seed(3)
    conv = torch.nn.Conv2d(8, 16, 3, padding=1)
    x = torch.randn(2, 8, 5, 6, generator=generator)
    output, bias = _without_bias(conv, x)
    assert bias is not None and bias.shape == (16,) and bias.dtype == torch.float32
    torch.testing.assert_close(output + bias[:, None, None], conv(x), rtol=1e-5, atol=1e-6)
    # Another kind of convolution (here one padding by reflection) runs as it is, its bias inside; so does any
    # where the folds are off.
    reflecting = torch.nn.Conv2d(8, 16, 3, padding=1, padding_mode="reflect")
    output, bias = _without_bias(reflecting, x)
    assert bias is None and torch.equal(output, reflecting(x))
    output, bias = _without_bias(conv, x, fold=False)
    assert bias is None and torch.equal(output, conv(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels need a CUDA GPU")
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_a_fused_block_with_a_shortcut_renders_as_diffusers_and_replays_from_a_cuda_graph(
    replays_new_inputs: Callable[[Callable[[], Any], Callable[[], None]], None], layout: torch.memory_format
) -> None:
    # An up block's first ResNet as a worker renders it (CFG batch 8, 928x1152's last level): both norms through the
    # operator, its three convolutions' biases folded (the first's into the norm, the second's and the shortcut's
    # into the residual add), in a CUDA graph; set against diffusers' own forward in bf16.
    from diffusers.models.resnet import ResnetBlock2D

    torch.manual_seed(0)
    block = ResnetBlock2D(in_channels=640, out_channels=320, temb_channels=1280).eval()
    block = block.to("cuda", torch.bfloat16).to(memory_format=layout)
    x = torch.randn(8, 640, 36, 29, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=layout)
    temb = torch.randn(8, 1280, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        plain = block(x, temb).double()
    assert use_fused_resnets(block) == 1

    def step() -> torch.Tensor:
        with torch.no_grad():
            return block(x, temb)

    with OperatorCalls() as calls:
        fused = step()
    assert calls.operators.count(torch.ops.headshot.add_residual_bias.default) == 1
    assert fused.is_contiguous(memory_format=layout) and _relative(fused, plain) < 8e-3

    def change() -> None:
        x.mul_(-1).add_(1)
        temb.mul_(2)

    replays_new_inputs(step, change)
