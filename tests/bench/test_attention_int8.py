"""An attention with its first product in int8 (``bench.attention_int8``): its Triton kernel computes
what the operator's torch maths compute, on every query, key and head, and compiles for the H200 with int8 and bf16
tensor-core products; the tiny UNet renders through it close to its own render, and trains through diffusers'
forward."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from bench.attention_int8 import attention_int8, int8_tokens, use_quantized_attention
from bench.benchmark_unet import unet_call_inputs
from pipeline.diffusion.loading import load_base_pipeline
from tests.pipeline.operator_calls import OperatorCalls

MODULE = "bench.attention_int8_kernel"


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.double() - expected.double()).norm() / expected.double().norm())


def _exact(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """The attention of the same bf16 tokens in float64."""
    batch, queries, width = q.shape

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.double().reshape(batch, x.shape[1], heads, width // heads).transpose(1, 2)

    out = functional.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(batch, queries, width)


def test_int8_tokens_round_each_token_by_its_own_largest_value() -> None:
    tokens = torch.tensor([[[1.0, -0.5, 0.25, 0.003], [0.0, 0.0, 0.0, 0.0], [300.0, -1.0, 2.0, 150.2]]])
    rounded = int8_tokens(tokens)
    # Each row's largest value is exact (127 steps of its 127th); the others land on that row's grid of 127 steps.
    steps = tokens.abs().amax(dim=-1, keepdim=True) / 127
    assert torch.equal(rounded[..., 0], tokens[..., 0])
    assert torch.equal(rounded[0, 1], tokens[0, 1])  # zeros stay zeros
    nonzero = steps.squeeze(-1) > 0
    grid = rounded[nonzero] / steps[nonzero]
    assert torch.allclose(grid, grid.round(), atol=1e-4)
    assert bool(((rounded - tokens).abs() <= steps / 2 * 1.0001).all())
    assert float(rounded[0, 0, 3]) == 0.0  # 0.003 is under half a step (1/254): rounded to zero


def test_the_kernel_attends_as_the_operator_maths_on_every_query_key_and_head(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    kernels = triton_kernels(MODULE, {"BLOCK_M": 16, "BLOCK_N": 16})
    generator = torch.Generator().manual_seed(0)
    # Queries and keys no multiples of the tiles, a key far larger than the others (its own scale), and the prompt's
    # cross-attention shape (few keys): partial tiles on both axes, and every head of every batch row.
    batch, heads, size = 2, 3, 16
    cases = {"self": (37, 37), "cross": (29, 7)}
    calls, expected = [], []
    for queries, keys in cases.values():
        q = torch.randn(batch, queries, heads * size, generator=generator).bfloat16()
        k = torch.randn(batch, keys, heads * size, generator=generator).bfloat16()
        v = (torch.randn(batch, keys, heads * size, generator=generator) * 3).bfloat16()
        k[0, 5 % keys] *= 20
        device = kernels.device
        # Each way: the keys rounded in every program that reads them, and by a pass of their own first.
        for keys_int8 in (False, True):
            calls.append(("attention", (q.to(device), k.to(device), v.to(device), heads, size**-0.5, keys_int8)))
            expected.append((attention_int8(q, k, v, heads, size**-0.5), _exact(q, k, v, heads)))
    outs = kernels.run(calls)
    names = [f"{case}, {way}" for case in cases for way in ("in the programs", "by a pass first")]
    for case, out, (maths, exact) in zip(names, outs, expected, strict=True):
        got = out.cpu()
        assert got.shape == maths.shape and got.dtype == torch.bfloat16, case
        # The same int8 logits (exact sums) and float32 softmax; the kernel multiplies bf16 weights by the values
        # (the maths float32 ones) and rounds its output to bf16: within bf16's rounding of the maths.
        assert _relative(got, maths) < 0.01, case
        # And a few percent from exact attention on these random tokens, whose outputs average many values (real
        # attention is peakier): the int8 logits' rounding, not a misplaced key or head, which misses by far.
        assert _relative(got, exact) < 0.04, case
        assert _relative(maths, exact) < 0.04, case


def test_the_kernel_compiles_for_the_h200_with_int8_and_bf16_products_and_no_spills(
    h200_compile: Callable[[str, list[tuple[str, tuple[Any, ...]]]], tuple[list[Any], dict[str, dict[str, int]]]],
) -> None:
    def meta(*shape: int) -> torch.Tensor:
        return torch.empty(shape, device="meta", dtype=torch.bfloat16)

    # SDXL's first level at a 928x1152 render's CFG batch 8: 4,176 tokens, 10 heads of 64; and its cross-attention.
    calls = [
        ("attention", (meta(8, 4176, 640), meta(8, 4176, 640), meta(8, 4176, 640), 10, 0.125)),
        ("attention", (meta(8, 4176, 640), meta(8, 77, 640), meta(8, 77, 640), 10, 0.125)),
        ("attention", (meta(8, 4176, 640), meta(8, 4176, 640), meta(8, 4176, 640), 10, 0.125, True)),
    ]
    compiled, figures = h200_compile(MODULE, calls)
    # The attention three times, and the keys' rounding pass before the third.
    assert len(compiled) == 4 and "_quantize_tokens" in compiled[2].name
    for kernel in compiled[:2] + compiled[3:]:
        ptx = kernel.asm["ptx"]
        assert ".s32.s8.s8" in ptx and "wgmma.mma_async" in ptx  # the queries by the keys, in int8
        assert ".f32.bf16.bf16" in ptx  # the weights by the values, in bf16
    for name, kernel_figures in figures.items():
        assert kernel_figures["spill_bytes"] == 0, (name, kernel_figures)


def test_the_tiny_unet_renders_through_the_operator_close_to_its_own_render(model_cache_dir: Path) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    unet = pipe.unet
    inputs = unet_call_inputs(pipe, batch=2)
    with torch.no_grad():
        plain = unet(**inputs).sample
    attentions = [module for module in unet.modules() if type(module).__name__ == "Attention"]
    quantized = use_quantized_attention(unet)
    assert quantized == len(attentions) > 0 and use_quantized_attention(unet) == 0
    with torch.no_grad(), OperatorCalls() as calls:
        rendered = unet(**inputs).sample
    assert calls.operators.count(torch.ops.headshot.attention_int8.default) == quantized
    # The queries' and keys' int8 rounding moves the render by a fraction of a percent (~0.1% here), far less than
    # the FP8 linears' rounding moves it (~1.7%, tests/pipeline/test_geglu_float8.py).
    assert 0 < _relative(rendered, plain) < 0.01

    # Training (gradients on) keeps diffusers' forward, and the same call as before renders the same.
    with OperatorCalls() as calls:
        unet(**inputs).sample.float().square().mean().backward()
    assert torch.ops.headshot.attention_int8.default not in calls.operators
    assert use_quantized_attention(unet, enabled=False) == quantized
    assert not any("forward" in vars(attention) for attention in attentions)
    with torch.no_grad():
        assert torch.equal(unet(**inputs).sample, plain)
