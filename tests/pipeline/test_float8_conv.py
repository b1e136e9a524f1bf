"""The ResNet blocks' 3x3 convolutions in FP8 (``pipeline.diffusion.float8_conv``): the operator is the convolution
within FP8's rounding, its Triton kernel computes the operator's maths on every pixel and channel, and the tiny UNet
calibrates, keeps and renders with them as with the FP8 linears."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional

from bench.benchmark_unet import unet_call_inputs
from pipeline.diffusion import float8_conv
from pipeline.diffusion.float8 import use_float8_linears
from pipeline.diffusion.float8_conv import Float8Conv2d, convertible, use_bf16_convs, use_float8_convs
from pipeline.diffusion.float8_scales import calibrate_float8, load_input_scales, save_input_scales, static_layers
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.resnet_glue import use_fused_resnets
from tests.pipeline.operator_calls import OperatorCalls
from tests.pipeline.triton_kernels import naming

# Each operand rounds to e4m3's 3 mantissa bits, a relative error uniform within +-2**-4 (rms 2**-4 / sqrt(3) =
# 3.6%), so a product's is ~5.1% rms and a sum of many independent products' no more: 6% bounds the convolution.
# A tap or channel read from the wrong place misses by ~100%.
FP8_CONV_ERROR = 0.06
# The kernel's products sum in the tensor cores' FP8 accumulator (``float8_conv_kernel``): against the float32 maths,
# 0.2% of an SDXL convolution's output norm on an H100 (3.687% from float64 against 3.680% promoted, in quadrature;
# BENCHMARKS.md 2026-12-06 twenty-second session); its largest element difference there, 0.031, about 1% of the
# largest output: bounded at twice that.
ACCUMULATION_NORM = 0.005
ACCUMULATION = 0.02


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.detach().double() - expected.detach().double()).norm() / expected.detach().double().norm())


def _calibrated(conv: nn.Conv2d, x: torch.Tensor) -> Float8Conv2d:
    layer = Float8Conv2d.from_conv(conv)
    layer.calibrating = True
    with torch.no_grad():
        layer(x)
    layer.calibrating = False
    layer.input_scale.copy_(layer.input_max * 1.25 / 448)
    layer.calibrated = True
    return layer


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_operator_is_the_convolution_within_fp8_rounding_in_either_layout(layout: torch.memory_format) -> None:
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(96, 48, 3, padding=1)
    x = torch.randn(2, 96, 5, 7, generator=generator).bfloat16().contiguous(memory_format=layout)
    layer = _calibrated(conv.bfloat16(), x)
    with torch.no_grad():
        out = layer(x)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=layout)
    expected = functional.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    assert _relative(out, expected) < FP8_CONV_ERROR
    # Every border pixel included: the zero padding is the convolution's.
    assert _relative(out[..., 0, :], expected[..., 0, :]) < FP8_CONV_ERROR
    assert _relative(out[..., :, -1], expected[..., :, -1]) < FP8_CONV_ERROR


def test_the_layer_renders_only_once_calibrated_and_trains_as_the_plain_convolution() -> None:
    generator = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(32, 16, 3, padding=1)
    x = torch.randn(1, 32, 4, 6, generator=generator)
    layer = Float8Conv2d.from_conv(conv)
    assert layer.weight is conv.weight and layer.bias is conv.bias  # no copy of the bf16 weight
    with torch.no_grad(), pytest.raises(RuntimeError, match="not been calibrated"):
        layer(x)
    # With gradients on it is the plain convolution, and the gradient reaches the shared weight.
    layer(x).square().sum().backward()
    plain = nn.Conv2d(32, 16, 3, padding=1)
    plain.load_state_dict({"weight": conv.weight.detach(), "bias": conv.bias.detach()})
    plain(x).square().sum().backward()
    assert conv.weight.grad is not None and plain.weight.grad is not None
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad, rtol=0, atol=0)
    # An in-place weight change (a LoRA merged into it) reaches the FP8 copy at refresh.
    before = layer.weight_scale.clone()
    with torch.no_grad():
        layer.weight.mul_(2)
    layer.refresh()
    torch.testing.assert_close(layer.weight_scale, 2 * before)


def test_only_3x3_stride_1_convolutions_on_whole_tiles_are_converted() -> None:
    assert convertible(nn.Conv2d(64, 32, 3, padding=1))
    assert not convertible(nn.Conv2d(64, 32, 3, stride=2, padding=1))  # a downsampler
    assert not convertible(nn.Conv2d(4, 32, 3, padding=1))  # conv_in
    assert not convertible(nn.Conv2d(64, 4, 3, padding=1))  # conv_out
    assert not convertible(nn.Conv2d(64, 32, 1))  # a shortcut
    with pytest.raises(ValueError, match="leave it in bf16"):
        Float8Conv2d.from_conv(nn.Conv2d(48, 32, 3, padding=1))


def test_the_triton_kernel_computes_the_operators_maths_on_every_pixel_and_channel(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    kernels = triton_kernels("float8_conv_kernel", {"BLOCK_M": 16, "BLOCK_N": 32, "GROUP_M": 2})
    generator = torch.Generator().manual_seed(2)
    # 96 input channels: three reduction tiles a tap; 48 out channels and 70 pixels: partial tiles on both axes.
    conv = nn.Conv2d(96, 48, 3, padding=1).bfloat16()
    layer = Float8Conv2d.from_conv(conv)
    # The input on FP8's grid at a power-of-two scale: the operator's maths cast the bf16 input to the same e4m3
    # values the kernel is handed.
    scale = torch.tensor(2.0**-5)
    grid = torch.randn(2, 96, 5, 7, generator=generator).mul(64).clamp(-448, 448).to(torch.float8_e4m3fn)
    x = (grid.float() * scale).bfloat16().contiguous(memory_format=torch.channels_last)
    args = (layer.weight_fp8, layer.weight_scale, scale, conv.bias)
    device = kernels.device
    on_device = tuple(t.to(device) for t in args)
    quantized = grid.contiguous(memory_format=torch.channels_last)  # the same input as its norm would write it
    outs = kernels.run(
        [
            ("conv3x3_float8", (quantized.to(device), *on_device, torch.bfloat16)),
            ("conv3x3_float8", (quantized.to(device), *on_device[:3], None, torch.bfloat16)),
        ]
    )
    maths = torch.ops.headshot.conv3x3_float8(x, *args, torch.bfloat16)
    unbiased = torch.ops.headshot.conv3x3_float8(x, *args[:3], None, torch.bfloat16)
    for case, out, expected in zip(("biased", "no bias"), outs, (maths, unbiased), strict=True):
        assert out.shape == (2, 48, 5, 7) and out.is_contiguous(memory_format=torch.channels_last), case
        # The same products summed in another order, each rounded once to bf16 (truncated in the interpreter): on a
        # GPU in the tensor cores' FP8 accumulator (~14 bits; ``float8_conv_kernel``), whose error grows with the
        # reduction's length and its sums' size, not the output's. So: within two bf16 steps of the value and
        # ACCUMULATION of the largest output, where a tap or channel read from the wrong place misses by far more.
        expected, got = expected.float(), out.cpu().float()
        exceeds = (got - expected).abs() > expected.abs() * 2**-7 + ACCUMULATION * expected.abs().max()
        worst = float((got - expected).abs().max().detach())
        assert not bool(exceeds.any()), f"{case}: {int(exceeds.sum())} of {exceeds.numel()} differ, by {worst} at most"
        assert _relative(got, expected) < ACCUMULATION_NORM, case


def test_the_norm_writes_the_convolutions_fp8_input_in_its_own_pass(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    kernels = triton_kernels("group_norm_nhwc_kernel", {"TILE_PIXELS": 8, "TILE_CHANNELS": 16, "CHUNK_TILES": 2})
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(2, 48, 5, 7, generator=generator).bfloat16().contiguous(memory_format=torch.channels_last)
    shift = torch.randn(2, 48, generator=generator)
    weight, bias = torch.randn(48, generator=generator), torch.randn(48, generator=generator)
    scale = torch.tensor(0.004)
    device = kernels.device
    call = (x, shift, weight, bias, 8, 1e-5, scale)
    on_device = tuple(arg.to(device) if isinstance(arg, torch.Tensor) else arg for arg in call)
    (out,) = kernels.run([("group_norm_silu_float8_nhwc", on_device)])
    maths = torch.ops.headshot.group_norm_silu_float8(*call)
    assert out.dtype == maths.dtype == torch.float8_e4m3fn and out.is_contiguous(memory_format=torch.channels_last)
    # The norm's own output divided by the scale: the same value in e4m3 (or its neighbour, where float32 sums in
    # another order, or the interpreter's truncating cast, land across a rounding boundary).
    activated = torch.ops.headshot.group_norm_silu(x, shift, weight, bias, 8, 1e-5)[0].float() / scale
    torch.testing.assert_close(maths.float(), activated.clamp(-448, 448), rtol=2**-3, atol=2**-6)
    got, expected = out.cpu().float(), maths.float()
    if kernels.interpreted:
        # The interpreter's e4m3 cast truncates, and where rounding would carry into the exponent it drops a binade
        # (7.87 to 4.0, not 8.0; a GPU's rounds to 8.0): held to the same value only clear of those carries.
        binade = torch.exp2(torch.floor(torch.log2(activated.abs().clamp(min=2**-9))))
        clear = activated.abs() < binade * 1.875
        got, expected = got[clear], expected[clear]
    torch.testing.assert_close(got, expected, rtol=2**-3, atol=2**-9)


def test_the_tiny_unet_calibrates_keeps_and_renders_with_fp8_resnet_convolutions(
    model_cache_dir: Path, tmp_path: Path
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    unet = pipe.unet.to(memory_format=torch.channels_last)
    inputs = unet_call_inputs(pipe, batch=2)
    with torch.no_grad():
        reference = unet(**inputs).sample
    use_fused_resnets(unet)  # as a GPU worker channels-last by blocks renders
    linears = use_float8_linears(unet, scaling="static")
    convs = use_float8_convs(unet)
    resnets = [m for m in unet.modules() if type(m).__name__ == "ResnetBlock2D"]
    assert convs == 2 * len(resnets) and use_float8_convs(unet) == 0
    assert len(static_layers(unet)) == linears + convs

    def run() -> None:
        unet(**inputs)

    assert calibrate_float8(unet, run) == linears + convs
    with torch.no_grad(), OperatorCalls() as calls:
        rendered = unet(**inputs).sample
    # Each norm before an FP8 convolution writes its input in e4m3.
    assert calls.operators.count(torch.ops.headshot.conv3x3_float8.default) == convs
    assert calls.operators.count(torch.ops.headshot.group_norm_silu_float8.default) == convs
    assert torch.ops.headshot.group_norm_silu.default not in calls.operators
    float8_conv.NORM_WRITES_FLOAT8 = False
    try:
        with torch.no_grad(), OperatorCalls() as calls:
            cast_in_loop = unet(**inputs).sample
    finally:
        float8_conv.NORM_WRITES_FLOAT8 = True
    assert torch.ops.headshot.group_norm_silu_float8.default not in calls.operators
    # The same quantized values, but for the few the norm's bf16 rounding first moves across an e4m3 step.
    assert _relative(rendered, cast_in_loop) < 0.01
    assert torch.ops.aten.convolution.default in calls.operators  # conv_in, conv_out, samplers, shortcuts: bf16
    # The FP8 linears alone give this model 1.5%; each of its 24 FP8 convolutions then adds its own rounding (5.9% in
    # all). A convolution reading the wrong taps would give ~100%.
    error = _relative(rendered, reference)
    assert 0 < error < 2 * FP8_CONV_ERROR

    # Kept and reloaded with the linears' scales, by name, weight scales checked.
    scales_file = tmp_path / "float8-scales.json"
    save_input_scales(unet, scales_file, recipe="test")
    restarted = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir).unet
    use_float8_linears(restarted, scaling="static")
    use_float8_convs(restarted)
    assert load_input_scales(restarted, scales_file, recipe="test")
    kept = {name: float(layer.input_scale) for name, layer in static_layers(unet).items()}
    assert {name: float(layer.input_scale) for name, layer in static_layers(restarted).items()} == kept
    assert use_bf16_convs(unet) == convs and not any(isinstance(m, Float8Conv2d) for m in unet.modules())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the kernel's own tiles and a CUDA graph need a GPU")
def test_on_a_gpu_the_kernel_is_the_operators_maths_replayed_from_a_cuda_graph() -> None:
    generator = torch.Generator(device="cuda").manual_seed(3)
    # SDXL's second level at a 928x1152 render's batch of 8: 640 channels in, 640 out, 58x72 pixels.
    conv = nn.Conv2d(640, 640, 3, padding=1, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(8, 640, 58, 72, device="cuda", generator=generator, dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    layer = _calibrated(conv, x)
    with torch.no_grad():
        args = (layer.weight_fp8, layer.weight_scale, layer.input_scale, conv.bias, torch.bfloat16)
        eager = layer(x)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            replayed = layer(x)
        graph.replay()
        with torch.backends.cudnn.flags(allow_tf32=False):  # the maths' float32 convolution in float32, not TF32
            maths = torch.ops.headshot.conv3x3_float8(x.contiguous(), *args)  # NCHW: the operator's torch maths
    torch.cuda.synchronize()
    torch.testing.assert_close(replayed, eager, rtol=0, atol=0)
    atol = ACCUMULATION * float(maths.abs().max())
    torch.testing.assert_close(eager.float(), maths.float(), rtol=2**-7, atol=atol, msg=naming("kernel vs maths"))
    assert _relative(eager, maths) < ACCUMULATION_NORM
    expected = functional.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    assert _relative(eager, expected) < FP8_CONV_ERROR
    # The norm writing the input in e4m3 on the GPU: torch's maths' value, or its neighbour where float32 sums in
    # another order land across a rounding boundary; and the convolution of it, the same as casting in its loop.
    shift = torch.randn(8, 640, device="cuda", generator=generator)
    norm = (torch.randn(640, device="cuda", generator=generator), torch.randn(640, device="cuda", generator=generator))
    with torch.no_grad():
        quantized = torch.ops.headshot.group_norm_silu_float8(x, shift, *norm, 32, 1e-5, layer.input_scale)
        maths = torch.ops.headshot.group_norm_silu_float8(x.contiguous(), shift, *norm, 32, 1e-5, layer.input_scale)
        activated = torch.ops.headshot.group_norm_silu(x, shift, *norm, 32, 1e-5)[0]
        from_norm, cast_in_loop = layer.quantized(quantized, torch.bfloat16), layer(activated)
    assert quantized.dtype == torch.float8_e4m3fn and quantized.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(quantized.float(), maths.float(), rtol=2**-3, atol=2**-9)
    assert float((quantized.float() != maths.float()).float().mean()) < 0.01
    # The norm's e4m3 is rounded from float32, the cast's from the bf16 activation: the ~3% of values within a bf16
    # rounding of an e4m3 boundary (2 * 2**-9 of a 2**-4 step) move by one step (6-12%), ~1.5% of the input's norm.
    assert _relative(from_norm, cast_in_loop) < 0.02


def test_the_kernel_compiles_for_the_h200_with_fp8_products_and_no_spills(
    h200_compile: Callable[[str, list[tuple[str, tuple[Any, ...]]]], tuple[list[Any], dict[str, dict[str, int]]]],
) -> None:
    def meta(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return torch.empty(shape, device="meta", dtype=dtype)

    # SDXL's widest convolution and its narrowest at a 928x1152 render's CFG batch 8, from their norms' e4m3.
    calls: list[tuple[str, tuple[Any, ...]]] = []
    for channels_in, channels_out, height, width in ((2560, 1280, 29, 36), (320, 320, 144, 116)):
        x = meta(8, channels_in, height, width, dtype=torch.float8_e4m3fn).contiguous(memory_format=torch.channels_last)
        scales = (meta(channels_out, dtype=torch.float32), meta(dtype=torch.float32), meta(channels_out))
        weight = meta(channels_out, 9 * channels_in, dtype=torch.float8_e4m3fn)
        calls.append(("conv3x3_float8", (x, weight, *scales, torch.bfloat16)))
    compiled, figures = h200_compile("float8_conv_kernel", calls)
    assert len(compiled) == len(calls)
    for kernel in compiled:  # Hopper's FP8 tensor-core products, fed by asynchronous copies (a pipelined loop)
        assert "wgmma.mma_async" in kernel.asm["ptx"] and "e4m3" in kernel.asm["ptx"]
        assert "cp.async" in kernel.asm["ptx"]
    for name, kernel_figures in figures.items():
        assert kernel_figures["spill_bytes"] == 0, (name, kernel_figures)
