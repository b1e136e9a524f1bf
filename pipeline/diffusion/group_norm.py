"""The UNet's group norms as one operator whose moments many programs reduce at once (``headshot::group_norm``).

PyTorch's CUDA group norm reduces each (sample, group) in one thread block: a training call at batch 16 and 1024 px
has 512 groups of up to 492 thousand values a norm, on a card of 132 multiprocessors. Under autocast, which lists
group norm among its float32 operators, each norm also copied its bf16 input to float32 and returned float32. Here
each channel's pixels are reduced in chunks by many programs and the chunks' moments merged exactly (Chan et al.),
then one pass normalizes, in the input's dtype with float32 inside: on an H200 a training call's norms take a
quarter of the time (``python -m bench.benchmark_group_norm``, BENCHMARKS.md 2026-12-04 fifth session).

A worker's training slot trains through it; ``OneOperatorGroupNorm`` says where it runs. ``NoGradGroupNorm`` runs it
with gradients off too: in a GPU worker's VAE, whose norms are large enough to pay for the launches, and in
a UNet whose render calls replay from CUDA graphs, where launches cost nothing. On CUDA the operators run
Triton kernels on NCHW tensors (``group_norm_kernel``: the UNet's layout with the "blocks" scope) and on
channels-last ones (``group_norm_nhwc_kernel``), each result in its input's layout; elsewhere the same maths run in
float32 torch ops, so a CPU's tiny model trains through the same operator. They are
``torch.library`` operators, not an ``autograd.Function``, so inductor's caches keep the graphs that call them
(``pipeline.diffusion.geglu`` says more).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

__all__ = [
    "NoGradGroupNorm",
    "OneOperatorGroupNorm",
    "affine_norm",
    "channels_last",
    "group_norm",
    "group_norm_backward",
    "memory_format_of",
    "norm_gradients",
    "per_channel",
    "save_for_backward",
    "use_group_norm_operator",
]


def _moments(x: torch.Tensor, groups: int, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the values as (N, groups, rest) in float32, their mean and 1/sqrt(var + eps), each (N, groups))."""
    grouped = x.float().reshape(x.shape[0], groups, -1)
    var, mean = torch.var_mean(grouped, dim=-1, correction=0)
    return grouped, mean, torch.rsqrt(var + eps)


def channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is a channels-last 4-D tensor (and not also NCHW-contiguous, as one of a single pixel or channel
    is): the operators return their results in the layout they were given, NCHW or this."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def affine_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``functional.group_norm(x, groups, weight, bias, eps)`` in float32, with each (sample, group)'s mean and
    1/sqrt(var + eps): the torch maths of both forward operators."""
    grouped, mean, rstd = _moments(x, groups, eps)
    normalized = ((grouped - mean[..., None]) * rstd[..., None]).reshape(x.shape)
    return normalized * per_channel(weight, x) + per_channel(bias, x), mean, rstd


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The layout the operators return ``x``'s results in: its own, channels-last or NCHW."""
    return torch.channels_last if channels_last(x) else torch.contiguous_format


def per_channel(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (C,) tensor shaped to broadcast over ``x``'s (N, C, ...)."""
    return values.float().reshape(1, -1, *([1] * (x.dim() - 2)))


@torch.library.custom_op("headshot::group_norm", mutates_args=())
def group_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``functional.group_norm(x, groups, weight, bias, eps)`` in ``x``'s dtype, with the mean and 1/sqrt(var + eps)
    of each (sample, group) in float32 (what the backward needs)."""
    out, mean, rstd = affine_norm(x, weight, bias, groups, eps)
    return out.to(x.dtype).contiguous(memory_format=memory_format_of(x)), mean, rstd


@group_norm.register_fake
def _group_norm_shapes(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    stats = x.new_empty((x.shape[0], groups), dtype=torch.float32)
    return torch.empty_like(x, memory_format=memory_format_of(x)), stats, torch.empty_like(stats)


@torch.library.custom_op("headshot::group_norm_backward", mutates_args=())
def group_norm_backward(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, groups: int
) -> torch.Tensor:
    """The gradient of ``group_norm``'s output with respect to ``x`` for the output's gradient ``grad``, in float32
    and returned in ``x``'s dtype: ``rstd * (g - mean(g) - x̂ * mean(g * x̂))`` per group, ``g`` the gradient of the
    normalized values (``grad * weight``) and ``x̂`` those values."""
    grouped = x.float().reshape(x.shape[0], groups, -1)
    normalized = (grouped - mean[..., None]) * rstd[..., None]
    normalized_grad = (grad.float() * per_channel(weight, x)).reshape(grouped.shape)
    mean_grad = normalized_grad.mean(dim=-1, keepdim=True)
    mean_product = (normalized_grad * normalized).mean(dim=-1, keepdim=True)
    result = rstd[..., None] * (normalized_grad - mean_grad - normalized * mean_product)
    return result.reshape(x.shape).to(x.dtype).contiguous(memory_format=memory_format_of(x))


@group_norm_backward.register_fake
def _group_norm_backward_shape(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, groups: int
) -> torch.Tensor:
    return torch.empty_like(x, memory_format=memory_format_of(x))


@group_norm.register_kernel("cuda")
def _group_norm_cuda(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if channels_last(x):
        from pipeline.diffusion.group_norm_nhwc_kernel import group_norm_forward_nhwc

        return group_norm_forward_nhwc(x, weight, bias, groups, eps)
    from pipeline.diffusion.group_norm_kernel import group_norm_forward_nchw

    return group_norm_forward_nchw(x, weight, bias, groups, eps)


@group_norm_backward.register_kernel("cuda")
def _group_norm_backward_cuda(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, groups: int
) -> torch.Tensor:
    if channels_last(x):
        from pipeline.diffusion.group_norm_nhwc_kernel import group_norm_backward_nhwc

        return group_norm_backward_nhwc(grad, x, weight, mean, rstd, groups)
    from pipeline.diffusion.group_norm_kernel import group_norm_backward_nchw

    return group_norm_backward_nchw(grad, x, weight, mean, rstd, groups)


def save_for_backward(
    ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> None:
    """What ``group_norm``'s backward needs, from its (x, weight, bias, groups, eps) and its (out, mean, rstd): also
    ``token_layout``'s entry norm's, which takes and returns the same."""
    x, weight, _bias, groups, _eps = inputs
    _out, mean, rstd = output
    ctx.groups = groups
    ctx.mark_non_differentiable(mean, rstd)  # the backward's inputs, not results to differentiate through
    ctx.save_for_backward(x, weight, mean, rstd)


def norm_gradients(ctx: Any, grad: torch.Tensor, _mean_grad: Any, _rstd_grad: Any) -> tuple[Any, ...]:
    """The gradients of (x, weight, bias, groups, eps) for the NCHW output's gradient ``grad``
    (``save_for_backward`` kept the rest)."""
    x, weight, mean, rstd = ctx.saved_tensors
    grad_x = (
        torch.ops.headshot.group_norm_backward(grad, x, weight, mean, rstd, ctx.groups)
        if ctx.needs_input_grad[0]
        else None
    )
    grad_weight = grad_bias = None
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        # The affine parameters' gradients (a frozen base never asks): sums over samples and pixels, torch ops.
        grouped = x.float().reshape(x.shape[0], ctx.groups, -1)
        normalized = ((grouped - mean[..., None]) * rstd[..., None]).reshape(x.shape)
        over = [0, *range(2, x.dim())]
        grad_weight = (grad.float() * normalized).sum(over).to(weight.dtype) if ctx.needs_input_grad[1] else None
        grad_bias = grad.float().sum(over).to(weight.dtype) if ctx.needs_input_grad[2] else None
    return grad_x, grad_weight, grad_bias, None, None


group_norm.register_autograd(norm_gradients, setup_context=save_for_backward)


class OneOperatorGroupNorm(torch.nn.GroupNorm):
    """``torch.nn.GroupNorm`` whose training forward is ``headshot::group_norm`` (same weights, same outputs within
    the input dtype's rounding).

    Only where gradients are on: a training step replays its kernels from CUDA graphs, but rendering launches the
    UNet's eager glue from Python, and there the operator's dispatch and its three Triton launches a norm cost the
    host more than the kernels save the GPU: a render call measured slower (BENCHMARKS.md, 2026-12-04 fifth
    session). And only for an NCHW-contiguous input (the "blocks" scope's layout) or a channels-last one (the "unet"
    and "regions" scopes'; ``group_norm_nhwc_kernel``); another layout keeps torch's norm."""

    no_grad = False  # gradients off: torch's norm (``NoGradGroupNorm``: the operator)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch.nn.GroupNorm's parameter name
        laid_out = input.is_contiguous() or channels_last(input)
        if not (self.no_grad or torch.is_grad_enabled()) or input.dim() < 3 or not laid_out:
            return functional.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)
        return torch.ops.headshot.group_norm(input, self.weight, self.bias, self.num_groups, self.eps)[0]


class NoGradGroupNorm(OneOperatorGroupNorm):
    """``OneOperatorGroupNorm`` through the operator with gradients on or off. For norms whose launches from Python
    cost nothing next to their kernels: a VAE encoder's, over a megapixel of 128 channels (torch's norm was 169 of
    the ~600 ms of kernels encoding a job's 20 crops on an H200, BENCHMARKS.md 2026-12-04 fourth session), a VAE
    decoder's (up to four megapixels of 128 to 512 channels; channels-last, where torch's eager norm copies each
    input to NCHW and back: an upscale's decode 0.21 s against 0.63 s, ninth session), and a UNet's whose render
    calls replay from CUDA graphs (``HEADSHOT_RENDER_CUDA_GRAPHS``; a replayed FP8 render call 3.3% faster on an
    H200, 2026-12-04 sixth session, 3.5% on an H100 80GB, 2026-12-05 sixteenth)."""

    no_grad = True


def use_group_norm_operator(model: Any, *, enabled: bool = True, no_grad: bool = False) -> int:
    """Make every affine ``torch.nn.GroupNorm`` of ``model`` train through ``headshot::group_norm`` and, with
    ``no_grad``, run it with gradients off too (``NoGradGroupNorm``); ``enabled=False``: torch's norm again. A norm
    that runs it with gradients off already keeps doing so. Returns how many norms. Call it before compiling: a
    compiled graph keeps the forward it traced."""
    count = 0
    for module in model.modules():
        if not (isinstance(module, torch.nn.GroupNorm) and module.affine):
            continue
        if not enabled:
            module.__class__ = torch.nn.GroupNorm
        elif no_grad:
            module.__class__ = NoGradGroupNorm
        elif not isinstance(module, OneOperatorGroupNorm):
            module.__class__ = OneOperatorGroupNorm
        count += 1
    return count
