"""LoRA'd projections trained through ``headshot::lora_linear``: peft's outputs and gradients, in eager and compiled
calls; peft's own forward wherever the operator does not apply."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from peft.tuners.lora.layer import Linear as LoraLinear

from pipeline.diffusion.lora_linear import OneOperatorLoraLinear, use_lora_operator
from tests.pipeline.operator_calls import OperatorCalls
from tests.pipeline.triton_kernels import naming

LORA_LINEAR = torch.ops.headshot.lora_linear.default


def test_the_operator_passes_torchs_operator_checks() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 32, generator=generator, requires_grad=True)
    weight, bias = torch.randn(48, 32, generator=generator), torch.randn(48, generator=generator)
    down = torch.randn(4, 32, generator=generator, requires_grad=True)
    up = torch.randn(48, 4, generator=generator, requires_grad=True)
    # Fake shapes against the real ones, the autograd registration's gradients, and dynamo tracing through it.
    torch.library.opcheck(torch.ops.headshot.lora_linear.default, (x, weight, bias, down, up, 0.5))
    torch.library.opcheck(torch.ops.headshot.lora_linear.default, (x, weight, None, down, up, 2.0))


def test_a_lora_on_the_tiny_unet_gets_the_same_gradient_through_the_operator(
    tiny_lora_gradient: tuple[Any, Callable[[], torch.Tensor]],
) -> None:
    unet, gradient = tiny_lora_gradient
    plain = gradient()
    count = use_lora_operator(unet)
    assert count > 0 and all(type(m) is OneOperatorLoraLinear for m in unet.modules() if isinstance(m, LoraLinear))
    with OperatorCalls() as calls:
        fused = gradient()
    assert calls.operators.count(LORA_LINEAR) == count  # every LoRA'd projection, once a call
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-7)  # float32 rounding of the sums' order
    assert use_lora_operator(unet, enabled=False) == count
    assert all(type(m) is LoraLinear for m in unet.modules() if isinstance(m, LoraLinear))


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_compiled_layer_trains_as_peft_does_and_falls_back_where_the_operator_does_not_apply() -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    model = get_peft_model(
        torch.nn.Sequential(torch.nn.Linear(32, 48)), LoraConfig(r=4, lora_alpha=8, target_modules=["0"])
    )
    layer = model.base_model.model[0]
    torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.1)  # B non-zero, so A gets a gradient too
    x, grad = torch.randn(3, 5, 32), torch.randn(3, 5, 48)

    def trained() -> list[torch.Tensor]:
        for param in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
            param.grad = None
        given = x.clone().requires_grad_(True)
        out = model(given)
        out.backward(grad)
        return [out.detach(), given.grad, layer.lora_A["default"].weight.grad, layer.lora_B["default"].weight.grad]

    plain = trained()
    assert use_lora_operator(model) == 1
    model.compile(backend="inductor", fullgraph=True)  # inductor around the operator, as in a worker's blocks
    for got, expected in zip(trained(), plain, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # Gradients off (rendering), the adapter disabled, or a dropout before it: peft's own forward.
    with torch.no_grad(), OperatorCalls() as calls:
        layer(x)
    assert LORA_LINEAR not in calls.operators
    with model.disable_adapter(), OperatorCalls() as calls:
        layer(x)
    assert LORA_LINEAR not in calls.operators


def test_an_fp8_rendering_layer_trains_in_bf16_through_the_operator_but_not_in_fp8_or_while_calibrating() -> None:
    # A GPU worker renders through FP8 layers by default and trains on the same layers in bf16: their product with
    # gradients on is a plain linear, so the operator serves them; training in FP8 or recording inputs, it does not.
    from peft import LoraConfig, get_peft_model

    from pipeline.diffusion.float8 import Float8Linear

    torch.manual_seed(2)
    model = get_peft_model(
        torch.nn.Sequential(Float8Linear.from_linear(torch.nn.Linear(32, 48))),
        LoraConfig(r=4, lora_alpha=4, target_modules=["0"]),
    )
    layer = model.base_model.model[0]
    torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.1)
    x = torch.randn(6, 32)
    expected = layer(x)  # peft's forward: the base's plain linear plus the LoRA's product
    assert use_lora_operator(model) == 1
    with OperatorCalls() as calls:
        got = layer(x)
    assert LORA_LINEAR in calls.operators
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    layer.base_layer.calibrating = True
    with OperatorCalls() as calls:
        layer(x)
    assert LORA_LINEAR not in calls.operators


@pytest.mark.usefixtures("fresh_dynamo")
def test_under_autocast_the_products_run_in_its_dtype_and_the_float32_lora_gets_float32_gradients() -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(64, 64)), LoraConfig(r=8, target_modules=["0"]))
    model.base_model.model[0].base_layer.to(torch.bfloat16)  # a bf16 base and a float32 LoRA, as a worker trains
    layer = model.base_model.model[0]
    torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.1)
    lora = [layer.lora_A["default"].weight, layer.lora_B["default"].weight]
    x, grad = torch.randn(4, 64), torch.randn(4, 64)

    def trained() -> list[torch.Tensor]:
        for param in lora:
            param.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.float().backward(grad)
        assert all(param.grad is not None and param.grad.dtype == torch.float32 for param in lora)
        return [out.detach(), *(param.grad for param in lora if param.grad is not None)]

    plain = trained()
    use_lora_operator(model)
    fused = trained()
    model.compile(backend="inductor", fullgraph=True)  # autocast's dtype read inside a compiled block, no break
    for ours in (fused, trained()):
        assert ours[0].dtype == plain[0].dtype == torch.bfloat16
        for got, expected in zip(ours, plain, strict=True):
            torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-2)  # bf16 products, sums in another order


def test_the_triton_kernel_adds_the_lora_product_into_every_element(
    triton_kernels: Callable[[str, dict[str, int]], Any],
) -> None:
    kernels = triton_kernels("lora_linear_kernel", {"ROWS": 16, "COLUMNS": 16})
    tile_rows, tile_columns = kernels.tiles["ROWS"], kernels.tiles["COLUMNS"]
    # (rows, columns, rank, how the weight lies): the forward's up-projection comes transposed (peft's ``lora_B``
    # weight is columns by rank), the backward's down-projection as rank rows.
    cases = {
        "partial tiles both ways, rank 16, transposed": (3 * tile_rows + 5, 2 * tile_columns + 7, 16, True),
        "rank 4, under tl.dot's 16": (2 * tile_rows, tile_columns, 4, False),
        "rank 24, padded to 32, transposed": (tile_rows + 1, tile_columns + 3, 24, True),
    }
    generator = torch.Generator(device=kernels.device).manual_seed(0)

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=kernels.device, generator=generator).bfloat16()

    inputs, calls = [], []
    for rows, columns, rank, transposed in cases.values():
        weight = draw(columns, rank).t() if transposed else draw(rank, columns)
        out, hidden = draw(rows, columns), draw(rows, rank)
        inputs.append((out.cpu(), hidden.cpu(), weight.cpu()))
        calls.append(("accumulate_product", (out, hidden, weight, 0.5)))
    results = kernels.run(calls)

    for case, (out, hidden, weight), got in zip(cases, inputs, results, strict=True):
        expected = out.double() + 0.5 * hidden.double() @ weight.double()
        # One rounding to bf16 of a float32 sum: within bf16's half step of each element.
        torch.testing.assert_close(got.cpu().double(), expected, rtol=8e-3, atol=1e-3, msg=naming(case))
        # The CPU's way (``addmm_``) gives the same numbers.
        torch.testing.assert_close(
            got.cpu(), out.clone().addmm_(hidden, weight, alpha=0.5), rtol=1.6e-2, atol=1e-3, msg=naming(case)
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel runs on a CUDA GPU")
def test_on_a_gpu_the_operator_matches_float64_and_replays_from_a_cuda_graph(
    capture_cuda_graph: Callable[[Callable[[], torch.Tensor]], tuple[torch.Tensor, Any, torch.Tensor]],
) -> None:
    generator = torch.Generator(device="cuda").manual_seed(0)

    def draw(*shape: int, trained: bool = False) -> torch.Tensor:
        drawn = torch.randn(*shape, device="cuda", generator=generator, dtype=torch.bfloat16)
        return drawn.requires_grad_(trained)

    # A projection of 320 features to 640 at rank 16 (the Triton kernel's case), the tokens not a tile's multiple.
    x, down, up = draw(2, 70, 320, trained=True), draw(16, 320, trained=True), draw(640, 16, trained=True)
    weight, bias, grad = draw(640, 320), draw(640), draw(2, 70, 640)

    def step() -> torch.Tensor:
        for tensor in (x, down, up):
            tensor.grad = None
        out = torch.ops.headshot.lora_linear(x, weight, bias, down, up, 0.5)[0]
        out.backward(grad)
        assert x.grad is not None and down.grad is not None and up.grad is not None
        return torch.cat([out.detach().flatten(), x.grad.flatten(), down.grad.flatten(), up.grad.flatten()])

    wide = [tensor.detach().double().requires_grad_(True) for tensor in (x, down, up)]
    reference = wide[0] @ weight.double().t() + bias.double() + 0.5 * (wide[0] @ wide[1].t()) @ wide[2].t()
    reference.backward(grad.double())
    expected = torch.cat(
        [reference.detach().flatten(), *(tensor.grad.flatten() for tensor in wide if tensor.grad is not None)]
    )
    first, graph, replayed = capture_cuda_graph(step)
    assert float((first.double() - expected).norm() / expected.norm()) < 1e-2  # bf16's rounding of each result
    with torch.no_grad():
        x.mul_(-1)
    graph.replay()
    torch.testing.assert_close(replayed, step())
    assert not torch.equal(replayed, first)
