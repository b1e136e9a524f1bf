"""An experiment: an attention rendered with its first product in int8 (``headshot::attention_int8``), the second
in bf16, and what it measured against the cuDNN attention a worker runs.

Attention is a fifth of an SDXL render call on an H100 (cuDNN's bf16 flash attention, ~19 of ~98 ms), and the
product of the queries by the keys is half its work. Hopper's tensor cores multiply int8 at twice bf16's rate and sum
int8 products exactly in int32. Rounded per token (each query's and each key's largest value at 127, SageAttention's
scheme), a head's queries and keys keep ~7 bits against FP8's 3: on random tokens the output is ~2% from float32's
where e4m3 queries and keys put it ~5% away. The softmax stays in float32 and the weights multiply the values in bf16.

Measured on an H100 (BENCHMARKS.md 2026-12-06 twenty-third session), it lost: a render call's attentions took 46.6 ms
through the kernel (37.5 at its best tile) against cuDNN's 19.9, and its bf16 control (the kernel with its first
product in bf16) 33.4, so the Triton kernel itself is the gap: without warp specialisation its softmax, rounding and
products run one after the other at a head size of 64, where cuDNN overlaps them. It stays here, out of the worker,
as the baseline for the next attempt: ``python -m bench.benchmark_attention_int8`` times it alone, and
``python -m bench.benchmark_float8`` with ``-int8attn`` in a variant's name a render call through it
(``use_quantized_attention``: rendering only, through ``glue_calls``, in diffusers attentions of the plain kind;
training keeps diffusers' forward). Elsewhere (a CPU, tests) the same rounding runs in torch ops.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.diffusion.glue_calls import RENDER, switch_fused, wanted

__all__ = ["HEAD_SIZES", "attention_int8", "fusable", "int8_tokens", "use_quantized_attention"]

# The head sizes the kernel takes: powers of two from tl.dot's smallest operand (16) to flash attention's usual 128.
HEAD_SIZES = (16, 32, 64, 128)


def int8_tokens(x: torch.Tensor) -> torch.Tensor:
    """``x`` (..., tokens, head size) with each token rounded as the kernel rounds it: to int8 by 127 over its
    largest value, to nearest (ties away from zero), and back; float32."""
    x = x.float()
    amax = x.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(amax > 0, 127.0 / amax.clamp(min=1e-30), torch.ones_like(amax))
    scaled = x * scale
    return torch.trunc(scaled + torch.where(scaled >= 0, 0.5, -0.5)) / scale


@torch.library.custom_op("headshot::attention_int8", mutates_args=())
def attention_int8(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` per head, in ``q``'s dtype and layout: ``q`` (batch, queries, heads x size),
    ``k`` and ``v`` (batch, keys, heads x size). The queries and keys rounded per token to int8
    (``int8_tokens``), the softmax in float32, the values as given."""
    batch, queries, width = q.shape
    size = width // heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(batch, x.shape[1], heads, size).transpose(1, 2)

    logits = int8_tokens(split(q)) @ int8_tokens(split(k)).transpose(-1, -2) * scale
    out = torch.softmax(logits, dim=-1) @ split(v).float()
    return out.transpose(1, 2).reshape(batch, queries, width).to(q.dtype)


@attention_int8.register_fake
def _attention_int8_shape(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    return torch.empty_like(q, memory_format=torch.contiguous_format)


@attention_int8.register_kernel("cuda")
def _attention_int8_cuda(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    from bench.attention_int8_kernel import attention

    return attention(q.contiguous(), k.contiguous(), v.contiguous(), heads, scale)


def fusable(attention: Any) -> bool:
    """Whether ``attention`` is a diffusers ``Attention`` that computes no more than ``softmax(q k^T * scale) v``
    between its projections: diffusers' default processor, no norms of its own, no residual or output rescale, and
    a head size the kernel takes (``HEAD_SIZES``)."""
    if type(attention).__name__ != "Attention" or type(attention.processor).__name__ != "AttnProcessor2_0":
        return False
    plain = all(
        getattr(attention, name, None) is None for name in ("spatial_norm", "group_norm", "norm_q", "norm_k")
    ) and not (attention.norm_cross or attention.residual_connection or attention.rescale_output_factor != 1)
    plain = plain and attention.scale_qk  # the scale SDPA takes by default, 1 / sqrt(head size)
    width = attention.to_q.out_features
    return plain and width % attention.heads == 0 and width // attention.heads in HEAD_SIZES


def use_quantized_attention(unet: Any, *, enabled: bool = True) -> int:
    """Render each fusable attention of ``unet`` through ``headshot::attention_int8`` (``enabled=False``: no
    longer); return how many changed. Before any compile (a compiled block keeps the forward it traced); training
    keeps diffusers' forward."""
    return switch_fused(unet, calls=RENDER, enabled=enabled, methods=("forward",), fusable=fusable, fuse=_fused)


def _fused(attention: Any, fused: set[str]) -> dict[str, Any]:
    eager = attention.forward  # the class's, bound

    def forward(
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        if not wanted(fused) or attention_mask is not None or kwargs or hidden_states.ndim != 3:
            return eager(hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        out = torch.ops.headshot.attention_int8(
            attention.to_q(hidden_states),
            attention.to_k(context),
            attention.to_v(context),
            attention.heads,
            attention.scale,
        )
        return attention.to_out[1](attention.to_out[0](out))

    return {"forward": forward}
