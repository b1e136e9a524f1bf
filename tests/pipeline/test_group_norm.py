"""The UNet's group norms trained through ``headshot::group_norm``: torch's outputs, autograd's gradients.

The references are torch's group norm under autograd in float64. On a CPU machine the operators run their torch
maths (and inductor compiles around them), and the Triton kernels behind them run in Triton's interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional

from bench.benchmark_unet import unet_call_inputs
from pipeline.diffusion.acceleration import gpu_layout
from pipeline.diffusion.group_norm import (
    NoGradGroupNorm,
    OneOperatorGroupNorm,
    channels_last,
    use_group_norm_operator,
)
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.training.dataset import encode_training_set
from tests.pipeline.operator_calls import OperatorCalls
from tests.pipeline.triton_kernels import naming

on_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels need a CUDA GPU")


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.double() - expected).norm() / expected.norm())


def _against_float64(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, grad: torch.Tensor, groups: int
) -> list[float]:
    """Relative errors of ``headshot::group_norm``'s output and of its gradients (input, weight, bias) against torch's
    group norm in float64."""
    leaves = [tensor.detach().double().requires_grad_(True) for tensor in (x, weight, bias)]
    expected = functional.group_norm(leaves[0], groups, leaves[1], leaves[2], 1e-5)
    expected.backward(grad.double())
    ours = [tensor.detach().clone().requires_grad_(True) for tensor in (x, weight, bias)]
    out = torch.ops.headshot.group_norm(ours[0], ours[1], ours[2], groups, 1e-5)[0]
    out.backward(grad)
    assert out.dtype == x.dtype
    errors = [_relative(out.detach(), expected.detach())]
    for mine, reference in zip(ours, leaves, strict=True):
        assert mine.grad is not None and reference.grad is not None
        errors.append(_relative(mine.grad, reference.grad))
    return errors


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-6), (torch.bfloat16, 8e-3)])
def test_the_operator_and_its_gradients_match_torchs_group_norm(dtype: torch.dtype, tolerance: float) -> None:
    generator = torch.Generator().manual_seed(0)
    # Off-centre values, as a UNet's activations are: a mean far from 0 is where a careless variance loses digits.
    x = (3 * torch.randn(2, 64, 9, 7, generator=generator) + 5).to(dtype)
    weight, bias = torch.randn(2, 64, generator=generator).to(dtype)
    grad = torch.randn(2, 64, 9, 7, generator=generator).to(dtype)
    assert max(_against_float64(x, weight, bias, grad, groups=32)) < tolerance


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_compiled_norm_trains_through_the_operator_and_renders_through_torchs() -> None:
    torch.manual_seed(1)
    plain = torch.nn.GroupNorm(8, 32)
    ours = torch.nn.GroupNorm(8, 32)
    ours.load_state_dict(plain.state_dict())
    assert use_group_norm_operator(ours) == 1 and isinstance(ours, OneOperatorGroupNorm)
    compiled = torch.compile(ours, fullgraph=True)  # inductor around the operators, as in a worker's regions
    sample = torch.randn(3, 32, 6, 5)
    grad = torch.randn(3, 32, 6, 5)

    def trained(module: Any) -> tuple[torch.Tensor, ...]:
        given = sample.clone().requires_grad_(True)
        out = module(given)
        out.backward(grad)
        assert given.grad is not None
        return out.detach(), given.grad, module.weight.grad, module.bias.grad

    for expected, got in zip(trained(plain), trained(compiled), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # no gradient wanted: torch's norm, bit for bit
        assert torch.equal(ours(sample), plain(sample))
    # A channels-last input (the "unet" and "regions" scopes' layout) trains through the operator too, its output in
    # that layout; another layout keeps torch's norm.
    given = sample.to(memory_format=torch.channels_last).requires_grad_(True)
    with OperatorCalls() as calls:
        out = ours(given)
    assert calls.operators.count(torch.ops.headshot.group_norm.default) == 1
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    out.backward(grad)
    expected_out, expected_grad, *_ = trained(plain)
    assert given.grad is not None
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(given.grad, expected_grad, rtol=1e-5, atol=1e-5)
    neither = sample.transpose(2, 3).contiguous().transpose(2, 3).requires_grad_(True)  # strides of neither layout
    with OperatorCalls() as calls:
        ours(neither)
    assert torch.ops.headshot.group_norm.default not in calls.operators
    assert use_group_norm_operator(ours, enabled=False) == 1 and type(ours) is torch.nn.GroupNorm


def test_a_unet_that_replays_its_renders_renders_through_the_operator_and_training_keeps_it(
    model_cache: Path,
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    unet, inputs = pipe.unet, unet_call_inputs(pipe, batch=2)
    with torch.no_grad():
        reference = unet(**inputs).sample
    count = use_group_norm_operator(unet, no_grad=True)  # a worker with HEADSHOT_RENDER_CUDA_GRAPHS, before compiling
    assert use_group_norm_operator(unet) == count  # its TrainingSlot's call after it leaves the norms rendering
    assert count > 0 and all(type(m) is NoGradGroupNorm for m in unet.modules() if isinstance(m, nn.GroupNorm))
    with torch.no_grad(), OperatorCalls() as calls:
        rendered = unet(**inputs).sample
    assert calls.operators.count(torch.ops.headshot.group_norm.default) == count  # each norm once, gradients off
    torch.testing.assert_close(rendered, reference, rtol=1e-4, atol=1e-5)  # the same maths, float32 rounding
    assert use_group_norm_operator(unet, enabled=False) == count
    assert all(type(m) is nn.GroupNorm for m in unet.modules() if isinstance(m, nn.GroupNorm))


def test_a_vae_encoder_encodes_a_training_set_the_same_through_the_operator(
    model_cache: Path, astronaut: Image.Image
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    images = [astronaut, astronaut.crop((0, 0, 400, 512))]  # two buckets: square and portrait
    plain = encode_training_set(pipe, images)
    assert use_group_norm_operator(pipe.vae.encoder, no_grad=True) > 0  # as a GPU worker's start does
    # Every norm runs the operator: most are fed NCHW-contiguous inputs, and the mid-block's after its attention a
    # transposed view, which is channels-last (the channels-last kernels then serve it on a GPU).
    layouts: list[str] = []
    for norm in (module for module in pipe.vae.encoder.modules() if isinstance(module, NoGradGroupNorm)):
        norm.register_forward_pre_hook(
            lambda _, args: layouts.append(
                "nchw" if args[0].is_contiguous() else "nhwc" if channels_last(args[0]) else ""
            )
        )
    with OperatorCalls() as calls:
        ours = encode_training_set(pipe, images)
    assert calls.operators.count(torch.ops.headshot.group_norm.default) == len(layouts)
    assert "" not in layouts and 0 < layouts.count("nhwc") < layouts.count("nchw")
    for got, expected in zip(ours.buckets, plain.buckets, strict=True):
        assert got.size == expected.size
        torch.testing.assert_close(got.mean, expected.mean, rtol=1e-4, atol=1e-5)  # float32 rounding only
        torch.testing.assert_close(got.std, expected.std, rtol=1e-4, atol=1e-5)


def test_a_channels_last_vae_decoder_decodes_the_same_through_the_operator(model_cache: Path) -> None:
    # On a GPU the NHWC Triton kernels, elsewhere the operator's torch maths.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = load_base_pipeline("tiny", device=device, cache_dir=model_cache)
    gpu_layout(pipe)  # the decoder channels-last, as a GPU worker lays it out
    vae = pipe.vae
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, vae.config.latent_channels, 24, 20, generator=generator).to(device, vae.dtype)
    # A request's batch, and one image alone (an upscale's or a face pass's decode, which a worker runs eagerly).
    batches = [latents.to(memory_format=torch.channels_last), latents[:1].contiguous()]
    with torch.no_grad():
        plain = [vae.decode(batch, return_dict=False)[0] for batch in batches]
    assert use_group_norm_operator(vae.decoder, no_grad=True) > 0  # as a GPU worker's start does
    layouts: list[str] = []
    for norm in (module for module in vae.decoder.modules() if isinstance(module, NoGradGroupNorm)):
        norm.register_forward_pre_hook(
            lambda _, args: layouts.append(
                "nchw" if args[0].is_contiguous() else "nhwc" if channels_last(args[0]) else "view"
            )
        )
    with torch.no_grad(), OperatorCalls() as calls:
        ours = [vae.decode(batch, return_dict=False)[0] for batch in batches]
    # Every norm runs the operator (the NHWC kernels on a GPU) but the mid-block attention's, fed a transposed
    # (batch, channels, pixels) view of one latent-sized image, which torch's norm keeps.
    assert calls.operators.count(torch.ops.headshot.group_norm.default) == len(layouts) - len(batches)
    assert layouts.count("view") == len(batches) and layouts.count("nhwc") > layouts.count("nchw")
    # float32 on a CPU: rounding only. bf16 on a GPU (a worker's dtype): the kernels round each norm's output once
    # where torch's bf16 norm rounds it too, at 2**-8 of a value, through a few layers that compound a few of those.
    tolerance = 1e-4 if vae.dtype == torch.float32 else 3e-2
    for got, expected in zip(ours, plain, strict=True):
        assert channels_last(got) == channels_last(expected)
        torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)


def test_a_lora_on_the_tiny_unet_gets_the_same_gradient_through_the_operator(
    tiny_lora_gradient: tuple[Any, Callable[[], torch.Tensor]],
) -> None:
    unet, gradient = tiny_lora_gradient
    plain = gradient()
    assert use_group_norm_operator(unet) > 0
    torch.testing.assert_close(gradient(), plain, rtol=1e-4, atol=1e-7)


def _kernels_compute_torchs_maths(
    kernels: Any, layout: torch.memory_format, cases: dict[str, tuple[tuple[int, ...], int]]
) -> None:
    """Run ``kernels``' forward and backward on each case's (shape, groups) in ``layout``; check every element of
    their results against torch's group norm in float64 and the operators' torch maths, and the results' layout."""
    suffix = "nhwc" if layout is torch.channels_last else "nchw"
    generator = torch.Generator(device=kernels.device).manual_seed(0)
    inputs, calls = [], []
    for shape, groups in cases.values():
        x = (3 * torch.randn(shape, device=kernels.device, generator=generator) + 5).bfloat16()
        weight, bias = torch.randn(2, shape[1], device=kernels.device, generator=generator).bfloat16()
        weight = 1 + weight / 2  # near 1, as trained norms' scales are, and not cancelling over a group
        # Gradients off-centre and leaning on x, as training's are: both group means the backward subtracts, the
        # gradient's and its product with the normalized values, are then large enough to be checked.
        grad = (torch.randn(shape, device=kernels.device, generator=generator) + 0.5 * x.float()).bfloat16()
        x, grad = x.contiguous(memory_format=layout), grad.contiguous(memory_format=layout)
        # The same numbers from the operators' torch maths (the CPU's way); its moments feed the backward kernels.
        cpu = torch.ops.headshot.group_norm(x.cpu(), weight.cpu(), bias.cpu(), groups, 1e-5)
        mean, rstd = (moment.to(kernels.device) for moment in cpu[1:])
        inputs.append((x, weight, bias, grad, groups, cpu))
        calls.append((f"group_norm_forward_{suffix}", (x, weight, bias, groups, 1e-5)))
        calls.append((f"group_norm_backward_{suffix}", (grad, x, weight, mean, rstd, groups)))
    results = kernels.run(calls)

    for case, (x, weight, bias, grad, groups, cpu), (out, mean, rstd), input_grad in zip(
        cases, inputs, results[::2], results[1::2], strict=True
    ):
        assert out.is_contiguous(memory_format=layout) and input_grad.is_contiguous(memory_format=layout), case
        reference = x.detach().cpu().double().requires_grad_(True)
        expected = functional.group_norm(reference, groups, weight.cpu().double(), bias.cpu().double(), 1e-5)
        expected.backward(grad.cpu().double())
        assert reference.grad is not None
        assert _relative(out.cpu(), expected.detach()) < 8e-3, case
        assert _relative(input_grad.cpu(), reference.grad) < 8e-3, case
        torch.testing.assert_close(out.cpu(), cpu[0], rtol=1.6e-2, atol=2e-2, msg=naming(case))
        torch.testing.assert_close(mean.cpu(), cpu[1], rtol=1e-5, atol=1e-5, msg=naming(case))
        torch.testing.assert_close(rstd.cpu(), cpu[2], rtol=1e-4, atol=0, msg=naming(case))
        cpu_backward = torch.ops.headshot.group_norm_backward(grad.cpu(), x.cpu(), weight.cpu(), cpu[1], cpu[2], groups)
        torch.testing.assert_close(input_grad.cpu(), cpu_backward, rtol=1.6e-2, atol=2e-2, msg=naming(case))


def test_the_triton_kernels_compute_torchs_maths_on_every_element(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    # The interpreter's tiles: chunks of 64 pixels a channel, combining windows of 16 partial results.
    kernels = triton_kernels("group_norm_kernel", {"BLOCK": 64, "PARTIALS": 16})
    block, partials = kernels.tiles["BLOCK"], kernels.tiles["PARTIALS"]
    # Only a channel's pixel count and a group's count of partial results shape the kernels' work.
    cases = {
        "fewer pixels than a chunk": ((3, 16, 1, block - 1), 8),
        "several chunks a channel, the last partial": ((2, 16, 2, block + 7), 8),
        "more partial results a group than a combining window": ((1, partials + 8, 1, block + 1), 1),
    }
    _kernels_compute_torchs_maths(kernels, torch.contiguous_format, cases)


def test_the_channels_last_kernels_compute_torchs_maths_on_every_element(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    # Tiles of 8 pixels by 16 channels, chunks of 2 tiles, combining windows of 16 partial results.
    small = {"TILE_PIXELS": 8, "TILE_CHANNELS": 16, "CHUNK_TILES": 2, "PARTIALS": 16}
    kernels = triton_kernels("group_norm_nhwc_kernel", small)
    pixels, channels, partials = (kernels.tiles[name] for name in ("TILE_PIXELS", "TILE_CHANNELS", "PARTIALS"))
    chunk = pixels * kernels.tiles["CHUNK_TILES"]
    cases = {
        "fewer pixels and channels than a tile": ((3, channels // 2, 1, pixels - 3), 4),
        # The last chunk's first tile partial and its second empty; the second channel tile partial; 3 channels a
        # group, so groups straddle the channel tiles.
        "several chunks, the last short; channels over two tiles": ((2, channels + 8, 1, 2 * chunk + pixels - 1), 8),
        # 4 channels of partials // 4 + 2 chunks each: past one combining window's worth, whatever the tiles.
        "more partial results a group than a combining window": ((1, 4, 1, chunk * (partials // 4 + 2)), 1),
    }
    _kernels_compute_torchs_maths(kernels, torch.channels_last, cases)


@on_gpu
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_operators_replay_from_a_cuda_graph(
    replays_new_inputs: Callable[[Callable[[], torch.Tensor], Callable[[], None]], None], layout: torch.memory_format
) -> None:
    x = torch.randn(4, 320, 40, 30, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=layout)
    x.requires_grad_(True)
    weight = torch.randn(320, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(320, device="cuda", dtype=torch.bfloat16)
    grad = torch.randn(4, 320, 40, 30, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=layout)

    def step() -> torch.Tensor:
        x.grad = None
        torch.ops.headshot.group_norm(x, weight, bias, 32, 1e-5)[0].backward(grad)
        assert x.grad is not None
        return x.grad

    replays_new_inputs(step, lambda: x.mul_(-1).add_(1))
