"""A LoRA'd projection trained as one operator (``headshot::lora_linear``): the LoRA's product is added into the base
layer's output by the product itself, and its input gradient into the base layer's, instead of each being written
apart and added in a pass of its own.

peft computes ``base(x) + lora_B(lora_A(x)) * scaling``. At SDXL's training sizes each LoRA'd projection then writes
the LoRA's output (tokens by features), reads it back with the base output to add them, and its backward does the
same with the LoRA's input gradient: four passes over a projection's activations beyond the products themselves, for
the 6 LoRA'd projections on image tokens in each of the UNet's 70 transformer blocks. Here the LoRA's up-projection
accumulates into the base output and the LoRA's input gradient into the base's, each element read and written once
(``C = alpha * A @ B + C``, A of the rank's few columns): on CUDA by a Triton kernel of the project's
(``lora_linear_kernel``), elsewhere by ``addmm_``. The arithmetic is the same up to the sum's order.

With cuBLAS's ``addmm_`` for the accumulations, a replayed training call measured 1.6% faster than peft's path on an
H200 (BENCHMARKS.md 2026-12-05 eighth session), the accumulating products slower than the adds they replaced; with
the Triton kernel 1.8% faster through compiled blocks and 2.2% through regions, its gradient closer to eager's
(``bench.benchmark_unet_training``'s ``-fusedlora`` modes, 2026-12-05 tenth session), so a worker's
``TrainingSlot`` trains through it. Only a plain LoRA on a frozen ``nn.Linear`` whose product is plain takes it
(one active adapter, no dropout, no DoRA or LoRA bias, gradients on; an FP8 rendering layer training in bf16
counts, one training in FP8 does not); anything else runs peft's forward. A ``torch.library`` operator, as
``headshot::geglu`` is, so compiled graphs and CUDA graphs keep it.
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn

from pipeline.diffusion.float8 import Float8Linear
from pipeline.diffusion.operator_classes import switch_class

__all__ = ["OneOperatorLoraLinear", "lora_linear", "lora_linear_backward", "use_lora_operator"]


def _accumulate(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """``out += scale * hidden @ weight`` in place, ``hidden`` of the LoRA's rank in columns: on CUDA in 16 bits by
    ``lora_linear_kernel`` up to its ``MAX_RANK`` (cuBLAS's accumulating products took 29 ms of a training call for
    two passes over ``out``), elsewhere by ``addmm_``."""
    if out.is_cuda and out.dtype in (torch.bfloat16, torch.float16) and hidden.dtype == weight.dtype == out.dtype:
        from pipeline.diffusion.lora_linear_kernel import MAX_RANK, accumulate_product

        if hidden.shape[1] <= MAX_RANK:
            return accumulate_product(out, hidden.contiguous(), weight, scale)
    return out.addmm_(hidden, weight, alpha=scale)


@torch.library.custom_op("headshot::lora_linear", mutates_args=())
def lora_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, down: torch.Tensor, up: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(``x @ weight.T + bias + scale * (x @ down.T) @ up.T``, and ``x @ down.T`` as rows, which the backward needs),
    ``x`` of any leading shape."""
    rows = x.reshape(-1, x.shape[-1])
    hidden = rows @ down.t()
    out = _accumulate(nn.functional.linear(rows, weight, bias), hidden, up.t(), scale)
    return out.reshape(*x.shape[:-1], weight.shape[0]), hidden


@lora_linear.register_fake
def _lora_linear_shapes(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, down: torch.Tensor, up: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = x.numel() // x.shape[-1]
    return x.new_empty((*x.shape[:-1], weight.shape[0])), x.new_empty((rows, down.shape[0]))


@torch.library.custom_op("headshot::lora_linear_backward", mutates_args=())
def lora_linear_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    down: torch.Tensor,
    up: torch.Tensor,
    hidden: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of ``lora_linear``'s output for its output's gradient ``grad``: with respect to ``x`` (the base's
    input gradient with the LoRA's accumulated into it), ``down`` and ``up``. The base weight is frozen."""
    rows = grad.reshape(-1, grad.shape[-1])
    hidden_grad = (rows @ up).mul_(scale)
    up_grad = (rows.t() @ hidden).mul_(scale)
    down_grad = hidden_grad.t() @ x.reshape(-1, x.shape[-1])
    input_grad = _accumulate(rows @ weight, hidden_grad, down, 1.0)
    return input_grad.reshape(x.shape), down_grad, up_grad


@lora_linear_backward.register_fake
def _lora_linear_backward_shapes(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    down: torch.Tensor,
    up: torch.Tensor,
    hidden: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(down), torch.empty_like(up)


def _save(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, weight, _bias, down, up, scale = inputs
    ctx.scale = scale
    ctx.mark_non_differentiable(output[1])  # the backward's input, not a result to differentiate through
    ctx.save_for_backward(x, weight, down, up, output[1])


def _gradients(ctx: Any, grad: torch.Tensor, _hidden_grad: Any) -> tuple[Any, ...]:
    x, weight, down, up, hidden = ctx.saved_tensors
    input_grad, down_grad, up_grad = torch.ops.headshot.lora_linear_backward(
        grad.contiguous(), x, weight, down, up, hidden, ctx.scale
    )
    return input_grad if ctx.needs_input_grad[0] else None, None, None, down_grad, up_grad, None


lora_linear.register_autograd(_gradients, setup_context=_save)


class OneOperatorLoraLinear(LoraLinear):
    """peft's LoRA ``Linear`` whose training forward is ``headshot::lora_linear`` where the layer is a plain LoRA on a
    frozen ``nn.Linear`` (``_adapter`` says when); peft's own forward otherwise."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        adapter = None if args or kwargs or not torch.is_grad_enabled() else self._adapter()
        if adapter is None:  # rendering, or a layer the operator does not serve
            return super().forward(x, *args, **kwargs)
        base = self.base_layer
        # Under autocast the products run in its dtype, as peft's do there; the LoRA's float32 weights get their
        # gradients back through the cast.
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        with torch.autocast(x.device.type, enabled=False):
            weights = [tensor.to(dtype) for tensor in (base.weight, self.lora_A[adapter].weight)]
            bias = None if base.bias is None else base.bias.to(dtype)
            up = self.lora_B[adapter].weight.to(dtype)
            return torch.ops.headshot.lora_linear(
                x.to(dtype).contiguous(), weights[0], bias, weights[1], up, float(self.scaling[adapter])
            )[0]

    def _adapter(self) -> str | None:
        """The one active adapter when this layer's forward can be the operator, else None."""
        active = [name for name in self.active_adapters if name in self.lora_A]
        if self.disable_adapters or self.merged or len(active) != 1:
            return None
        (adapter,) = active
        base = self.base_layer
        frozen = not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)
        plain = (
            adapter not in self.lora_variant
            and isinstance(self.lora_dropout[adapter], nn.Identity)
            and self.lora_B[adapter].bias is None
        )
        return adapter if _plain_product(base) and frozen and plain else None


def _plain_product(base: nn.Module) -> bool:
    """Whether ``base``'s forward with gradients on is ``functional.linear`` of its weight and bias: a plain
    ``nn.Linear``, or an FP8 rendering layer (on a GPU worker by default) that trains in bf16, neither in FP8 nor
    recording its inputs for calibration."""
    if type(base) is nn.Linear:
        return True
    return isinstance(base, Float8Linear) and not base.trains_in_float8 and not base.calibrating


def use_lora_operator(model: Any, *, enabled: bool = True) -> int:
    """Make every peft LoRA ``Linear`` of ``model`` train through ``headshot::lora_linear`` where it can
    (``OneOperatorLoraLinear``), or, with ``enabled=False``, through peft's forward again; returns how many layers.
    Call it before compiling: a compiled graph keeps the forward it traced."""
    return switch_class(model, LoraLinear, OneOperatorLoraLinear, enabled=enabled)
