"""SDXL's feed-forward gate (diffusers' ``GEGLU``) as one operator with a backward that touches each value once.

A GEGLU splits its projection into a value half and a gate half and returns ``value * gelu(gate)``. Compiled by
inductor, its backward is a ``cat`` of the two halves' gradients: one pointwise kernel over the whole output that, for
every element, evaluates both halves' maths (masked) behind a 64-bit division by the row length. On an H200 that
kernel took 48 ms of a 0.674 s training call at batch 16 (BENCHMARKS.md, 2026-12-04), about three times what its
memory traffic costs at the card's bandwidth. ``headshot::geglu_backward`` computes both gradients of one
(value, gate) pair in one place: the gate's ``erf`` and ``exp`` once a pair, each input read once, each output written
once, in rows and columns (no division). On CUDA it is a Triton kernel (``geglu_kernel``); elsewhere the same maths in
float32 torch ops, so a CPU's tiny model trains through the same operator.

The forward stays diffusers' own maths wherever no gradient is wanted, so rendering's compiled graphs (and the
FP8 casts inductor fuses into them) are untouched; only a forward that trains calls ``headshot::geglu``, whose
gradient is this operator. Both are ``torch.library`` operators, not an ``autograd.Function``, because inductor's
caches keep graphs that call operators and bypass graphs that call a custom ``autograd.Function``: a worker's
restart must find its training kernels.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers.models.activations import GEGLU
from torch.nn import functional

from pipeline.diffusion.operator_classes import switch_class

__all__ = ["OneOperatorGEGLU", "geglu", "geglu_backward", "use_geglu_operator"]

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@torch.library.custom_op("headshot::geglu", mutates_args=())
def geglu(projected: torch.Tensor) -> torch.Tensor:
    """``value * gelu(gate)`` for ``value, gate = projected.chunk(2, dim=-1)`` (exact GELU, as diffusers')."""
    value, gate = projected.chunk(2, dim=-1)
    return value * functional.gelu(gate)


@geglu.register_fake
def _geglu_shape(projected: torch.Tensor) -> torch.Tensor:
    return projected.new_empty((*projected.shape[:-1], projected.shape[-1] // 2))


@torch.library.custom_op("headshot::geglu_backward", mutates_args=())
def geglu_backward(projected: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The gradient of ``geglu`` with respect to ``projected`` for the output's gradient ``grad``, computed in
    float32 and returned in ``projected``'s dtype: the value half's ``grad * gelu(gate)`` beside the gate half's
    ``grad * value * gelu'(gate)``."""
    value, gate = projected.float().chunk(2, dim=-1)
    grad = grad.float()
    cdf = 0.5 * (1.0 + torch.erf(gate * _SQRT_HALF))
    pdf = torch.exp(-0.5 * gate * gate) * _INV_SQRT_2PI
    return torch.cat([grad * gate * cdf, grad * value * (cdf + gate * pdf)], dim=-1).to(projected.dtype)


@geglu_backward.register_fake
def _geglu_backward_shape(projected: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(projected)


@geglu.register_kernel("cuda")
def _geglu_cuda(projected: torch.Tensor) -> torch.Tensor:
    from pipeline.diffusion.geglu_kernel import geglu_forward_rows

    return geglu_forward_rows(projected)


@geglu_backward.register_kernel("cuda")
def _geglu_backward_cuda(projected: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    from pipeline.diffusion.geglu_kernel import geglu_backward_rows

    return geglu_backward_rows(projected, grad)


def _save_projection(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[0])


def _geglu_gradient(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
    (projected,) = ctx.saved_tensors
    return torch.ops.headshot.geglu_backward(projected, grad)


geglu.register_autograd(_geglu_gradient, setup_context=_save_projection)


class OneOperatorGEGLU(GEGLU):
    """diffusers' ``GEGLU`` whose training forward is ``headshot::geglu`` (same weights, same outputs)."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        projected = self.proj(hidden_states)
        if torch.is_grad_enabled() and projected.requires_grad:
            return torch.ops.headshot.geglu(projected)
        value, gate = projected.chunk(2, dim=-1)
        return value * self.gelu(gate)


def use_geglu_operator(model: Any, *, enabled: bool = True) -> int:
    """Make every diffusers ``GEGLU`` of ``model`` train through ``headshot::geglu`` (``enabled=False``: back to
    diffusers' own); return how many. Call it before compiling: a compiled graph keeps the forward it traced."""
    return switch_class(model, GEGLU, OneOperatorGEGLU, enabled=enabled)
