"""FP8 rendering layers: close to bf16, exact bf16 under autograd, and always holding the weights a LoRA slot set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bench.benchmark_unet import unet_call_inputs
from pipeline.diffusion.float8 import FLOAT8_MAX, SCALINGS, Float8Linear, refresh_float8, use_float8_linears
from pipeline.diffusion.float8_scales import CALIBRATION_HEADROOM, calibrate_float8, static_layers
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.lora_slot import SLOT_ADAPTER, LoraSlot
from pipeline.diffusion.serving import calibrate_float8_on_looks, calibrated_float8
from pipeline.styles import STYLES
from tests.pipeline.test_generation import difference
from tests.pipeline.test_lora_slot import render


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.double() - reference.double()).norm() / reference.double().norm())


def dequantized(layer: Float8Linear) -> torch.Tensor:
    return layer.weight_fp8.float() * layer.weight_scale.t()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fp8_layer_is_within_fp8_precision_of_the_linear_it_replaces(dtype: torch.dtype) -> None:
    linear = nn.Linear(320, 640).to(dtype)
    layer = Float8Linear.from_linear(linear)
    inputs = torch.randn(2, 77, 320, dtype=dtype) * torch.logspace(-2, 2, 77, dtype=dtype)[:, None]  # rows of any size

    with torch.no_grad():
        reference, fast = linear(inputs), layer(inputs)
    assert fast.shape == reference.shape and fast.dtype == dtype
    # e4m3 keeps 3 mantissa bits: a few percent per product, averaged down over the 320 terms of each sum.
    assert 1e-3 < relative_error(fast, reference) < 0.06
    assert layer.weight is linear.weight  # the same Parameter: merging a LoRA into one changes both


def test_with_autograd_on_the_layer_is_the_exact_linear_and_passes_gradients() -> None:
    linear = nn.Linear(64, 32)
    layer = Float8Linear.from_linear(linear)
    inputs = torch.randn(5, 64, requires_grad=True)

    output = layer(inputs)
    assert torch.equal(output, linear(inputs))
    output.sum().backward()
    assert inputs.grad is not None and torch.count_nonzero(inputs.grad) > 0


def test_layers_not_multiple_of_16_are_refused_with_their_shape() -> None:
    with pytest.raises(ValueError, match="40x24"):
        Float8Linear.from_linear(nn.Linear(24, 40))


def test_a_static_layer_renders_only_once_calibrated_then_within_fp8_precision() -> None:
    model = nn.Sequential(nn.Linear(320, 640).to(torch.bfloat16))
    linear = model[0]
    inputs = torch.randn(2, 77, 320, dtype=torch.bfloat16)
    with torch.no_grad():
        reference = linear(inputs)
    assert use_float8_linears(model, scaling="static", module_parts=("",)) == 1
    with pytest.raises(RuntimeError, match="calibrate_float8"), torch.no_grad():
        model(inputs)

    assert calibrate_float8(model, lambda: model(inputs)) == 1
    layer = model[0]
    largest = float(inputs.abs().max())
    assert float(layer.input_scale) == pytest.approx(largest * CALIBRATION_HEADROOM / FLOAT8_MAX, rel=1e-6)
    with torch.no_grad():
        assert 1e-3 < relative_error(model(inputs), reference) < 0.06
        beyond = model(inputs * 100)  # far past the calibrated range: clipped to FP8's largest value, never inf/NaN
    assert torch.isfinite(beyond).all()


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_static_layer_outside_compiled_regions_casts_the_same_bits_in_one_compiled_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch._dynamo.utils

    from pipeline.diffusion import float8

    model = nn.Sequential(nn.Linear(320, 640).to(torch.bfloat16))
    use_float8_linears(model, scaling="static", module_parts=("",))
    # Batches of two or more, as a worker's CFG renders (a batch of one is a graph of its own: dynamo specialises 1).
    inputs = [torch.randn(2, 77, 320, dtype=torch.bfloat16), 3 * torch.randn(4, 300, 320, dtype=torch.bfloat16)]
    calibrate_float8(model, lambda: model(inputs[0]))
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with torch.no_grad():
        eager = [model(batch) for batch in inputs]
        monkeypatch.setattr(float8, "EAGER_INPUT_CAST", "compiled")
        fused = [model(batch) for batch in inputs]  # the second also goes past the calibrated range: clipped alike
    for one, other in zip(eager, fused, strict=True):
        assert torch.equal(one, other)
    # One cast kernel for every input shape (counted from here: a reset dynamo keeps earlier tests' counters).
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs_before + 1


def test_calibration_names_the_layers_its_renders_never_reached() -> None:
    model = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32))
    use_float8_linears(model, scaling="static", module_parts=("",))
    with pytest.raises(ValueError, match=r"never reached 1 layers \(1,"):
        calibrate_float8(model, lambda: model[0](torch.randn(4, 32)))


def test_a_calibrated_static_render_stays_within_fp8_rounding_of_the_plain_render(model_cache_dir: Path) -> None:
    plain = render(load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)).image
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    layers = use_float8_linears(pipe.unet, scaling="static")
    assert calibrate_float8_on_looks(pipe, STYLES.values()) == layers
    fast = render(pipe).image
    # Mean absolute pixel difference out of 255. e4m3 keeps 3 mantissa bits (values rounded by up to 6.25%); through
    # this random-weight model's steps that measured 0.73 for static scales and 0.65 for dynamic ones: the bound
    # leaves twice that, and is under 1% of the pixel range. Not a judgement of quality on real weights.
    assert 0 < difference(fast, plain) < 1.5


def test_calibrating_through_the_merged_slot_runs_no_lora_product_and_keeps_the_scales_to_the_bit(
    model_cache_dir: Path, tmp_path: Path
) -> None:
    scales, lora_calls = {}, {}
    for merged in (True, False):
        pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
        slot = LoraSlot(pipe, max_rank=16)  # as a worker's start: the slot first, then the FP8 layers
        use_float8_linears(pipe.unet, scaling="static")
        # Weights, FP8 copies and their scales; not the calibration's own state (input maxima and scales, and the
        # gradient scales FP8 training would calibrate, NaN until then).
        weights = {
            name: tensor.clone()
            for name, tensor in pipe.unet.state_dict().items()
            if not name.rsplit(".", 1)[-1].startswith(("input_", "gradient_"))
        }
        ran: list[str] = []
        hooks = [
            module.register_forward_hook(lambda module, args, out, name=name, ran=ran: ran.append(name))
            for name, module in pipe.unet.named_modules()
            if name.endswith(f"lora_A.{SLOT_ADAPTER}")
        ]
        assert hooks, "the slot's zero LoRA is on the attention projections"
        assert not calibrated_float8(pipe, [STYLES["linkedin"]], tmp_path / f"{merged}.json", slot if merged else None)
        for hook in hooks:
            hook.remove()
        lora_calls[merged] = len(ran)
        scales[merged] = {name: layer.input_scale.clone() for name, layer in static_layers(pipe.unet).items()}
        # The slot is left as it was found: holding zeros, unmerged, every weight and FP8 copy as before.
        assert not slot.merged and slot.active is None
        after = pipe.unet.state_dict()
        assert all(torch.equal(after[name], tensor) for name, tensor in weights.items())
    assert lora_calls[True] == 0 < lora_calls[False]
    assert scales[True].keys() == scales[False].keys()
    assert all(torch.equal(scales[True][name], scales[False][name]) for name in scales[True])


def test_refresh_follows_an_in_place_weight_change() -> None:
    layer = Float8Linear.from_linear(nn.Linear(64, 32))
    with torch.no_grad():
        layer.weight.mul_(-3.0)
    layer.refresh()
    assert relative_error(dequantized(layer), layer.weight.detach()) < 0.05


def test_a_batched_refresh_quantizes_every_layer_as_it_would_alone() -> None:
    # Same-shaped layers of both schemes, and a third shape, as a LoRA slot's merge hands them over.
    layers = [
        Float8Linear.from_linear(nn.Linear(inputs, outputs).to(torch.bfloat16), scaling=scaling)
        for inputs, outputs in ((64, 32), (64, 32), (32, 48))
        for scaling in SCALINGS
    ]
    with torch.no_grad():
        for index, layer in enumerate(layers):
            layer.weight.mul_(index + 1)  # each its own range, so a scale taken from the wrong layer shows
    refresh_float8(layers)
    batched = [(layer.weight_fp8.view(torch.uint8).clone(), layer.weight_scale.clone()) for layer in layers]
    for layer, (quantized, scale) in zip(layers, batched, strict=True):
        layer.refresh()
        assert torch.equal(layer.weight_fp8.view(torch.uint8), quantized) and torch.equal(layer.weight_scale, scale)
        assert relative_error(dequantized(layer), layer.weight.detach()) < 0.05


def test_conversion_covers_the_transformer_linears_only_and_stays_close(model_cache_dir: Path) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    unet = pipe.unet
    inputs = unet_call_inputs(pipe, batch=2)
    with torch.no_grad():
        reference = unet(**inputs).sample

    converted = use_float8_linears(unet)
    fp8_names = {name for name, module in unet.named_modules() if isinstance(module, Float8Linear)}
    assert converted == len(fp8_names) > 0
    assert all(".attentions." in f".{name}." for name in fp8_names)
    assert any(type(module) is nn.Linear for module in unet.modules())  # time embedding and ResNets stay as they were
    assert use_float8_linears(unet) == 0  # converting again changes nothing

    with torch.no_grad():
        fast = unet(**inputs).sample
    assert 0 < relative_error(fast, reference) < 0.1


@pytest.mark.parametrize("scaling", ["dynamic", "static"])
def test_a_merged_slot_renders_its_lora_through_fp8_and_clearing_restores_the_fp8_weights(
    model_cache_dir: Path, trained: Any, scaling: str
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    slot = LoraSlot(pipe, max_rank=16)
    use_float8_linears(pipe.unet, scaling=scaling)
    if scaling == "static":
        calibrate_float8_on_looks(pipe, [STYLES["linkedin"]])  # as a worker does, before any user
    layers = {name: m for name, m in pipe.unet.named_modules() if isinstance(m, Float8Linear)}
    slot_bases = {name: m for name, m in layers.items() if name.endswith("base_layer")}
    assert slot_bases, "the slot's attention projections render in FP8 too"
    before = {name: layer.weight_fp8.clone() for name, layer in layers.items()}

    base_image = render(pipe)
    slot.swap_in(trained.lora_path)
    changed = [name for name, layer in slot_bases.items() if not torch.equal(layer.weight_fp8, before[name])]
    assert changed, "merging the LoRA must reach the FP8 copies"
    for name in changed:
        merged_weight = slot_bases[name].weight.detach().float()
        assert relative_error(dequantized(slot_bases[name]), merged_weight) < 0.05
    slot.clear()
    assert all(torch.equal(layer.weight_fp8, before[name]) for name, layer in layers.items())

    with_lora = render(pipe, trained.lora_path, slot)
    assert difference(with_lora.image, base_image.image) > 1.0  # the user's LoRA shows in the FP8 render
    assert difference(render(pipe).image, base_image.image) == 0  # and leaves nothing behind
