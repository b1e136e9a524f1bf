"""A transformer's entry and exit between a UNet's NCHW activations and its tokens, as operators that move the data
once (``headshot::group_norm_tokens``, ``headshot::tokens_to_nchw``, ``headshot::nchw_to_tokens``;
``pipeline.diffusion.transformer_glue`` runs SDXL's transformers through them).

diffusers' ``Transformer2DModel`` normalizes its NCHW input, permutes it to (N, H*W, C) tokens for ``proj_in`` (the
product copies the permuted view into place), and at its exit permutes ``proj_out``'s tokens back, copies them into
NCHW and adds the residual in another pass. The copies read or write one element a sector: in a replayed SDXL
render call they were 2.6 ms of kernels, in a training call 4.2 ms (H100 80GB, BENCHMARKS.md 2026-12-05 sixteenth
session). Here the entry's norm writes tokens, and the exit's transpose adds the residual, each through tiles
(``token_layout_kernel``). Their backwards are the other direction's transpose (and, at the entry, the norm's own
backward, ``headshot::group_norm_backward``). On an NCHW-contiguous CUDA tensor the Triton kernels run; elsewhere
the same maths in torch ops.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.diffusion.group_norm import affine_norm, norm_gradients, save_for_backward

__all__ = ["group_norm_tokens", "nchw_to_tokens", "tokens_to_nchw"]


def _on_gpu(x: torch.Tensor) -> bool:
    return x.is_cuda and x.is_contiguous()


def _as_tokens(x: torch.Tensor) -> torch.Tensor:
    """NCHW ``x`` as contiguous (N, H*W, C) tokens, torch's way."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1]).contiguous()


@torch.library.custom_op("headshot::group_norm_tokens", mutates_args=())
def group_norm_tokens(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``functional.group_norm(x, groups, weight, bias, eps)`` of NCHW ``x`` as contiguous (N, H*W, C) tokens in
    ``x``'s dtype, with each (sample, group)'s mean and 1/sqrt(var + eps) in float32."""
    if _on_gpu(x):
        from pipeline.diffusion.token_layout_kernel import group_norm_to_tokens

        return group_norm_to_tokens(x, weight, bias, groups, eps)
    normed, mean, rstd = affine_norm(x, weight, bias, groups, eps)
    return _as_tokens(normed.to(x.dtype)), mean, rstd


@group_norm_tokens.register_fake
def _group_norm_tokens_shapes(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    stats = x.new_empty((x.shape[0], groups), dtype=torch.float32)
    return x.new_empty((x.shape[0], x.shape[2] * x.shape[3], x.shape[1])), stats, torch.empty_like(stats)


@torch.library.custom_op("headshot::nchw_to_tokens", mutates_args=())
def nchw_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """NCHW ``x`` as contiguous (N, H*W, C) tokens."""
    if _on_gpu(x):
        from pipeline.diffusion import token_layout_kernel

        return token_layout_kernel.nchw_to_tokens(x)
    return _as_tokens(x)


@nchw_to_tokens.register_fake
def _nchw_to_tokens_shape(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty((x.shape[0], x.shape[2] * x.shape[3], x.shape[1]))


@torch.library.custom_op("headshot::tokens_to_nchw", mutates_args=())
def tokens_to_nchw(tokens: torch.Tensor, residual: torch.Tensor | None, height: int, width: int) -> torch.Tensor:
    """(N, H*W, C) ``tokens`` as a contiguous NCHW tensor of ``height`` by ``width``, plus NCHW ``residual`` where
    given (in float32, rounded once: what a bf16 add computes)."""
    if _on_gpu(tokens) and (residual is None or (residual.is_contiguous() and residual.dtype == tokens.dtype)):
        from pipeline.diffusion import token_layout_kernel

        return token_layout_kernel.tokens_to_nchw(tokens, residual, height, width)
    nchw = tokens.reshape(tokens.shape[0], height, width, tokens.shape[2]).permute(0, 3, 1, 2)
    if residual is None:
        return nchw.contiguous()
    dtype = torch.result_type(tokens, residual)
    opmath = torch.promote_types(dtype, torch.float32)  # half types add in float32, as torch's add does
    return (nchw.to(opmath) + residual.to(opmath)).to(dtype).contiguous()


@tokens_to_nchw.register_fake
def _tokens_to_nchw_shape(tokens: torch.Tensor, residual: torch.Tensor | None, height: int, width: int) -> torch.Tensor:
    dtype = tokens.dtype if residual is None else torch.result_type(tokens, residual)
    return tokens.new_empty((tokens.shape[0], tokens.shape[2], height, width), dtype=dtype)


def _norm_gradients(ctx: Any, grad: torch.Tensor, mean_grad: Any, rstd_grad: Any) -> tuple[Any, ...]:
    # The tokens' gradient back in NCHW, then the plain norm's gradients (it saved what the plain norm saves).
    nchw = torch.ops.headshot.tokens_to_nchw(grad.contiguous(), None, *ctx.saved_tensors[0].shape[2:])
    return norm_gradients(ctx, nchw, mean_grad, rstd_grad)


group_norm_tokens.register_autograd(_norm_gradients, setup_context=save_for_backward)


def _save_shape(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.shape = inputs[0].shape


def _transposed_back(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    return (torch.ops.headshot.tokens_to_nchw(grad.contiguous(), None, ctx.shape[2], ctx.shape[3]),)


nchw_to_tokens.register_autograd(_transposed_back, setup_context=_save_shape)


def _save_has_residual(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.residual = inputs[1] is not None


def _tokens_gradients(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    grad_tokens = torch.ops.headshot.nchw_to_tokens(grad.contiguous()) if ctx.needs_input_grad[0] else None
    grad_residual = grad if ctx.residual and ctx.needs_input_grad[1] else None
    return grad_tokens, grad_residual, None, None


tokens_to_nchw.register_autograd(_tokens_gradients, setup_context=_save_has_residual)
