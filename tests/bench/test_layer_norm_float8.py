"""The residual add, layer norm and FP8 cast in one kernel (``bench.layer_norm_float8_kernel``, an experiment): it
computes the worker's maths on every token and channel, with and without the add, and compiles for the H200 with no
spills."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional

MODULE = "bench.layer_norm_float8_kernel"


def _worker_maths(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """What a worker's compiled block casts to e4m3 after its norm: the norm (float32 inside, bf16 out) of ``x`` over
    the layer's input scale, clipped to e4m3's range."""
    normed = functional.layer_norm(x, (x.shape[1],), weight, bias, 1e-5)
    return (normed.float() / scale).clamp(-448, 448)


def test_the_kernel_adds_normalises_and_casts_as_the_worker_on_every_token_and_channel(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    kernels = triton_kernels(MODULE, {"ROWS": 4, "WARPS": 4})
    generator = torch.Generator().manual_seed(0)
    # Tokens no multiple of a program's rows, channels no power of two (the row's block is masked past them).
    tokens, width, scale = 37, 40, 4.0 / 448
    a, b = (torch.randn(tokens, width, generator=generator).bfloat16() for _ in range(2))
    a[3] *= 50  # a token far larger than the others: normalised by its own statistics
    weight = (1 + 0.1 * torch.randn(width, generator=generator)).bfloat16()
    bias = (0.1 * torch.randn(width, generator=generator)).bfloat16()
    device = kernels.device
    tensors = [t.to(device) for t in (a, b, weight, bias)]
    scale_t = torch.tensor(scale, device=device)
    added, plain = kernels.run(
        [
            ("add_layer_norm_float8", (tensors[0], tensors[1], tensors[2], tensors[3], 1e-5, scale_t)),
            ("add_layer_norm_float8", (tensors[0], None, tensors[2], tensors[3], 1e-5, scale_t)),
        ]
    )
    for case, (total, out), expected_total in (("with the add", added, a + b), ("without", plain, None)):
        assert out.shape == (tokens, width) and out.dtype == torch.float8_e4m3fn, case
        normed_input = a
        if expected_total is not None:
            # The same bf16 add: equal on a GPU; Triton's interpreter truncates its bf16 rounding, one step at most.
            step = 2.0 ** (torch.floor(torch.log2(expected_total.float().abs().clamp(min=2**-20))) - 7)
            assert bool(((total.cpu().float() - expected_total.float()).abs() <= step).all()), case
            normed_input = total.cpu()  # the norm of the sum the kernel wrote
        expected = _worker_maths(normed_input, weight, bias, scale)
        # Each e4m3 value within one step of the worker's (an eighth of its binade), where a channel's weight or a
        # token's statistics read from the wrong place misses by far.
        got = out.cpu().float()
        binade = torch.exp2(torch.floor(torch.log2(expected.abs().clamp(min=2**-6))))
        steps = 1.0
        if kernels.interpreted:
            # The interpreter truncates where a GPU rounds, in the norm's bf16 output and again in the e4m3 cast, and
            # where the e4m3 rounding would carry into the exponent it drops a binade (tests/pipeline/
            # test_geglu_float8.py): two steps, held to the values clear of a binade's edges.
            clear = (expected.abs() < binade * 1.875) & (expected.abs() > binade * 1.0625)
            got, expected, binade, steps = got[clear], expected[clear], binade[clear], 2.0
        assert bool(((got - expected).abs() <= binade * 2**-3 * steps * 1.01 + 2**-9).all()), case


def test_the_kernel_compiles_for_the_h200_with_no_spills(
    h200_compile: Callable[[str, list[tuple[str, tuple[Any, ...]]]], tuple[list[Any], dict[str, dict[str, int]]]],
) -> None:
    def meta(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return torch.empty(shape, device="meta", dtype=dtype)

    scale = meta(dtype=torch.float32)
    # Both SDXL levels at a 928x1152 render's CFG batch 8, the second level's norm with and without the add.
    calls = [
        ("add_layer_norm_float8", (meta(33408, 640), meta(33408, 640), meta(640), meta(640), 1e-5, scale)),
        ("add_layer_norm_float8", (meta(8352, 1280), meta(8352, 1280), meta(1280), meta(1280), 1e-5, scale)),
        ("add_layer_norm_float8", (meta(8352, 1280), None, meta(1280), meta(1280), 1e-5, scale)),
    ]
    compiled, figures = h200_compile(MODULE, calls)
    assert len(compiled) == 3
    for name, kernel_figures in figures.items():
        assert kernel_figures["spill_bytes"] == 0, (name, kernel_figures)
