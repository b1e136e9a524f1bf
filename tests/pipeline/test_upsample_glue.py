"""A UNet's up-block samplers as sub-pixel convolutions (``pipeline.diffusion.upsample_glue``): the four phases' 2x2
kernels compute the nearest upsampling's 3x3 convolution exactly, forward and backward, the interleaving kernel
writes every output pixel from its phase, and the tiny UNet renders and trains as before."""

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
from pipeline.diffusion.subpixel_conv import phase_weights, subpixel_conv
from pipeline.diffusion.transformer_glue import use_fused_transformers
from pipeline.diffusion.upsample_glue import fusable, use_subpixel_upsamplers
from tests.pipeline.operator_calls import OperatorCalls
from tests.pipeline.triton_kernels import naming


def _upsampled_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return functional.conv2d(functional.interpolate(x, scale_factor=2.0, mode="nearest"), weight, bias, padding=1)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_four_2x2_phases_are_the_upsampled_3x3_convolution_forward_and_backward(layout: torch.memory_format) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 7, generator=generator, dtype=torch.float64).contiguous(memory_format=layout)
    weight = torch.randn(4, 6, 3, 3, generator=generator, dtype=torch.float64)
    bias = torch.randn(4, generator=generator, dtype=torch.float64)
    grad = torch.randn(2, 4, 10, 14, generator=generator, dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
    out = subpixel_conv(leaves[0], phase_weights(leaves[1]), leaves[2])
    assert out.shape == (2, 4, 10, 14) and out.is_contiguous(memory_format=layout)
    out.backward(grad)
    references = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
    expected = _upsampled_conv(*references)
    expected.backward(grad)
    # The same products, summed in another order: float64's rounding apart, and every border pixel included.
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for name, mine, reference in zip(("x", "weight", "bias"), leaves, references, strict=True):
        assert mine.grad is not None and reference.grad is not None, name
        torch.testing.assert_close(mine.grad, reference.grad, rtol=1e-12, atol=1e-11, msg=naming(name))


def test_the_triton_kernel_interleaves_every_output_pixel_from_its_phase(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    kernels = triton_kernels("subpixel_kernel", {"TILE_ROWS": 4, "TILE_COLUMNS": 8})
    columns = kernels.tiles["TILE_COLUMNS"]
    generator = torch.Generator(device=kernels.device).manual_seed(1)
    # Channels over two tiles, the last partial; output pixels no multiple of the tile's rows.
    channels, height, width = columns + 3, 3, 5
    phases = 4 * torch.randn(2, 4 * channels, height + 1, width + 1, device=kernels.device, generator=generator)
    phases = phases.bfloat16().contiguous(memory_format=torch.channels_last)
    bias = torch.randn(channels, device=kernels.device, generator=generator)
    (out,) = kernels.run([("subpixel_interleave", (phases, bias, height, width))])
    assert out.shape == (2, channels, 2 * height, 2 * width) and out.is_contiguous(memory_format=torch.channels_last)
    maths = torch.ops.headshot.subpixel_interleave(phases.cpu(), bias.cpu(), height, width)
    if not kernels.interpreted:
        torch.testing.assert_close(out.cpu(), maths, rtol=0, atol=0)
        return
    # The interpreter's float32-to-bf16 cast truncates where torch's rounds: within one bf16 step of the exact sum,
    # where a pixel from the wrong phase would miss by ~4.
    exact = torch.empty(maths.shape)
    for a in (0, 1):
        for b in (0, 1):
            phase = phases.cpu()[:, (2 * a + b) * channels : (2 * a + b + 1) * channels]
            exact[:, :, a::2, b::2] = phase[:, :, a : a + height, b : b + width].float() + bias.cpu()[:, None, None]
    assert bool(((out.cpu().float() - exact).abs() <= exact.abs() * 2**-7).all())


def test_the_tiny_unet_renders_and_trains_the_same_through_subpixel_samplers(
    model_cache: Path, tiny_lora_gradient: tuple[Any, Callable[[], torch.Tensor]]
) -> None:
    # Channels-last with the transformers' exits in that layout, as a worker channels-last by blocks renders and
    # trains (diffusers' own exits copy their tokens into NCHW, and an NCHW sampler keeps diffusers' forward).
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    unet, inputs = pipe.unet.to(memory_format=torch.channels_last), unet_call_inputs(pipe, batch=2)
    assert use_fused_transformers(unet) > 0
    samplers = [module for module in unet.modules() if type(module).__name__ == "Upsample2D"]
    assert samplers and all(fusable(sampler) for sampler in samplers)
    with torch.no_grad():
        reference = unet(**inputs).sample
        assert use_subpixel_upsamplers(unet) == len(samplers) and use_subpixel_upsamplers(unet) == 0
        with OperatorCalls() as calls:
            rendered = unet(**inputs).sample
    assert calls.operators.count(torch.ops.headshot.subpixel_interleave.default) == len(samplers)
    assert torch.ops.aten.upsample_nearest2d.vec not in calls.operators
    torch.testing.assert_close(rendered, reference, rtol=1e-4, atol=1e-5)  # float32: the same products, reordered
    # NCHW keeps diffusers' forward.
    use_fused_transformers(unet, enabled=False)
    unet.to(memory_format=torch.contiguous_format)
    with torch.no_grad(), OperatorCalls() as calls:
        unet(**inputs)
    assert torch.ops.headshot.subpixel_interleave.default not in calls.operators
    assert use_subpixel_upsamplers(unet, enabled=False) == len(samplers)

    # Training: a LoRA's gradient through the samplers' backward, channels-last.
    lora_unet, gradient = tiny_lora_gradient
    lora_unet.to(memory_format=torch.channels_last)
    assert use_fused_transformers(lora_unet, calls=TRAIN) > 0
    plain = gradient()
    assert use_subpixel_upsamplers(lora_unet, calls=TRAIN) == len(samplers)
    with OperatorCalls() as calls:
        fused = gradient()
    assert calls.operators.count(torch.ops.headshot.subpixel_interleave.default) == len(samplers)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel needs a CUDA GPU")
def test_a_subpixel_sampler_renders_as_diffusers_and_replays_from_a_cuda_graph(
    replays_new_inputs: Callable[[Callable[[], Any], Callable[[], None]], None],
) -> None:
    # The first up block's sampler as a worker renders it: CFG batch 8 at 928x1152, 1280 channels, channels-last, bf16.
    from diffusers.models.upsampling import Upsample2D

    torch.manual_seed(0)
    sampler = Upsample2D(1280, use_conv=True, out_channels=1280).eval()
    sampler = sampler.to("cuda", torch.bfloat16).to(memory_format=torch.channels_last)
    x = torch.randn(8, 1280, 36, 29, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        plain = sampler(x).double()
    assert use_subpixel_upsamplers(sampler) == 1

    def step() -> torch.Tensor:
        with torch.no_grad():
            return sampler(x)

    ours = step()
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert float((ours.double() - plain).norm() / plain.norm()) < 8e-3

    def change() -> None:
        x.mul_(-1).add_(1)

    replays_new_inputs(step, change)


def test_a_rendering_sampler_makes_its_phases_once_for_its_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    # Making them copies the taps from the host, which a CUDA graph's capture refuses: a rendering call must reuse
    # them, even where the weight still requires a gradient (a model not frozen, as the benchmarks load it).
    from diffusers.models.upsampling import Upsample2D

    import pipeline.diffusion.upsample_glue as upsample_glue

    made: list[torch.Tensor] = []

    def counted(weight: torch.Tensor) -> torch.Tensor:
        made.append(weight)
        return phase_weights(weight)

    monkeypatch.setattr(upsample_glue, "phase_weights", counted)
    sampler = Upsample2D(32, use_conv=True, out_channels=32).eval().to(memory_format=torch.channels_last)
    x = torch.randn(2, 32, 5, 6).contiguous(memory_format=torch.channels_last)
    assert sampler.conv.weight.requires_grad and use_subpixel_upsamplers(sampler) == 1
    with torch.no_grad():
        first, second = sampler(x), sampler(x)
    assert len(made) == 1 and torch.equal(first, second)
    with torch.no_grad():
        sampler.conv.weight.mul_(2)  # a new weight in place: made again
        sampler(x)
    assert len(made) == 2


def test_each_glue_module_switches_only_the_methods_it_installed(model_cache: Path) -> None:
    # A ResNet block's fused forward and a sampler's are both instance ``forward``s: switching the samplers must leave
    # the blocks as they are (the training benchmark's reset of the samplers once unfused every ResNet block).
    from pipeline.diffusion.resnet_glue import use_fused_resnets

    unet = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache).unet
    blocks = [module for module in unet.modules() if type(module).__name__ == "ResnetBlock2D"]
    samplers = [module for module in unet.modules() if type(module).__name__ == "Upsample2D"]
    assert use_fused_resnets(unet, calls=TRAIN) == len(blocks)
    assert use_subpixel_upsamplers(unet, calls=TRAIN, enabled=False) == 0
    assert all("forward" in vars(block) for block in blocks)
    assert use_subpixel_upsamplers(unet) == len(samplers)  # rendering's samplers, and nothing of the blocks'
    inputs = unet_call_inputs(load_base_pipeline("tiny", device="cpu", cache_dir=model_cache), batch=2)
    with torch.no_grad(), OperatorCalls() as calls:
        unet(**inputs)
    assert torch.ops.headshot.group_norm_silu.default not in calls.operators  # the blocks fuse training's calls only
    assert use_fused_resnets(unet, calls=TRAIN, enabled=False) == len(blocks)
    assert not any("forward" in vars(block) for block in blocks)
    assert all("forward" in vars(sampler) for sampler in samplers)
