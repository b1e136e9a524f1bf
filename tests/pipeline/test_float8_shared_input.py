"""One FP8 copy of the tensor an attention's projections share: the same scales, the same output, fewer copies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.benchmark_unet import unet_call_inputs
from pipeline.diffusion.float8 import use_float8_linears
from pipeline.diffusion.float8_scales import calibrate_float8, static_layers
from pipeline.diffusion.float8_shared_input import (
    INDUCTOR_OPTIONS,
    compile_options,
    input_groups,
    share_input_scales,
)
from pipeline.diffusion.loading import load_base_pipeline


def calibrated(model_cache_dir: Path, *, shared: bool) -> tuple[Any, dict[str, Any]]:
    """The tiny pipeline with static FP8 layers (their scales shared or not), calibrated on one UNet call."""
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    use_float8_linears(pipe.unet, scaling="static")
    if shared:
        share_input_scales(pipe.unet)
    inputs = unet_call_inputs(pipe, batch=2)
    calibrate_float8(pipe.unet, lambda: pipe.unet(**inputs))
    return pipe, inputs


def test_shared_groups_calibrate_to_the_scales_each_layer_had_alone(model_cache_dir: Path) -> None:
    alone, _ = calibrated(model_cache_dir, shared=False)
    shared, _ = calibrated(model_cache_dir, shared=True)
    blocks = sum(1 for module in shared.unet.modules() if type(module).__name__ == "BasicTransformerBlock")
    groups = input_groups(shared.unet)
    assert blocks and len(groups) == 2 * blocks  # each block's self-attention (q, k, v) and cross-attention (k, v)
    assert {len(group) for group in groups} == {2, 3}
    for group in groups:
        assert all(layer.input_scale is group[0].input_scale for layer in group)
    own = {name: float(layer.input_scale) for name, layer in static_layers(alone.unet).items()}
    assert {name: float(layer.input_scale) for name, layer in static_layers(shared.unet).items()} == own

    # A block with shared scales compiles with the merging pass, with inductor only (another backend generates no code).
    block = next(module for module in shared.unet.modules() if type(module).__name__ == "BasicTransformerBlock")
    assert compile_options(block, "inductor") is INDUCTOR_OPTIONS and compile_options(block, "eager") is None
    share_input_scales(shared.unet, enabled=False)  # each layer its own tensor again, the same value
    assert compile_options(block, "inductor") is None
    scales = [layer.input_scale for layer in static_layers(shared.unet).values()]
    assert len({id(scale) for scale in scales}) == len(scales)
    assert {name: float(layer.input_scale) for name, layer in static_layers(shared.unet).items()} == own


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_compiled_block_writes_one_fp8_copy_per_shared_input_and_the_same_output(model_cache_dir: Path) -> None:
    from torch._inductor.utils import run_and_get_code

    outputs, copies = [], []
    for shared in (False, True):
        pipe, inputs = calibrated(model_cache_dir, shared=shared)
        block = next(module for module in pipe.unet.modules() if type(module).__name__ == "BasicTransformerBlock")
        tokens = torch.randn(2, 64, block.norm1.normalized_shape[0], generator=torch.Generator().manual_seed(1))
        # Every copy in a buffer of its own, so they can be counted.
        options: dict[str, Any] = {**(INDUCTOR_OPTIONS if shared else {}), "allow_buffer_reuse": False}
        compiled = torch.compile(block, fullgraph=True, options=options)
        with torch.no_grad():
            output, (code, *_) = run_and_get_code(
                compiled, tokens, encoder_hidden_states=inputs["encoder_hidden_states"]
            )
        outputs.append(output)
        copies.append(len(re.findall(r"= empty_strided\w*\(.*float8_e4m3fn\)$", code, flags=re.MULTILINE)))
    # Apart: one FP8 copy for each of the block's 10 FP8 layers. Shared: the self-attention's q, k and v read one copy
    # of the normalised tokens. (The prompt's k and v hold one cast in the graph too, but inductor's CPU code still
    # writes it twice from one kernel: a cast of a graph input, realized for each product; 77 tokens.)
    assert copies == [10, 8]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)


@pytest.mark.usefixtures("fresh_dynamo")
def test_the_merging_pass_keeps_random_draws_reads_after_a_mutation_and_returned_tensors_apart() -> None:
    def step(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        before = x * 2
        noise = (torch.rand_like(x), torch.rand_like(x))
        x.add_(1)
        return before, x * 2, *noise, x - 1, x - 1

    x = torch.zeros(8)
    options: dict[str, Any] = INDUCTOR_OPTIONS
    before, after, first, second, one, other = torch.compile(step, options=options)(x)
    assert torch.equal(before, torch.zeros(8)) and torch.equal(after, torch.full((8,), 2.0))
    assert not torch.equal(first, second)
    assert torch.equal(one, other) and one.data_ptr() != other.data_ptr()
