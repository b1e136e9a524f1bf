"""A UNet's transformers entering and leaving their tokens through ``pipeline.diffusion.token_layout``'s operators.

diffusers' ``Transformer2DModel`` (SDXL's, with linear projections) normalizes its NCHW input, permutes it into
tokens that ``proj_in``'s product copies into place, and at its exit copies ``proj_out``'s tokens back into NCHW
before adding the residual in a pass of its own. Here the entry's group norm writes the tokens
(``headshot::group_norm_tokens``) and the exit's transpose adds the residual (``headshot::tokens_to_nchw``): the same
values (the norm's float32 maths, one bf16 rounding of the sum), two passes and two strided copies fewer a
transformer. A channels-last UNet's tokens are its layout already: its entry stays diffusers' (a view), and its exit
adds ``proj_out``'s tokens, viewed as NCHW, to the residual without diffusers' copy into NCHW (which also made the
add mix two layouts, a channels-last render call's costliest elementwise kernel and its costliest copy, BENCHMARKS.md
2026-12-05 sixteenth session). ``use_fused_transformers`` switches it on for rendering, training or both
(``glue_calls``) for transformers with continuous inputs, linear projections and an affine group norm. What it saves
is timed by ``python -m bench.benchmark_float8 --variants static-blocks-gn-graphs,static-blocks-gn-tokens-graphs``
(``static-blocks-cl-gn-graphs,static-blocks-cl-gn-tokens-graphs`` channels-last).
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.diffusion import token_layout as _registers_the_operators  # noqa: F401  # headshot::*tokens*
from pipeline.diffusion.glue_calls import RENDER, switch_fused, wanted

__all__ = ["fusable", "use_fused_transformers"]

_METHODS = ("_operate_on_continuous_inputs", "_get_output_for_continuous_inputs")


def fusable(transformer: Any) -> bool:
    """Whether ``transformer`` (a diffusers ``Transformer2DModel``) enters and leaves its tokens as the fused
    methods compute."""
    norm = getattr(transformer, "norm", None)
    return (
        type(transformer).__name__ == "Transformer2DModel"
        and getattr(transformer, "is_input_continuous", False)
        and getattr(transformer, "use_linear_projection", False)
        and isinstance(norm, torch.nn.GroupNorm)
        and norm.affine
    )


def use_fused_transformers(unet: Any, *, calls: str = RENDER, enabled: bool = True) -> int:
    """Run each fusable transformer of ``unet``'s entry and exit through the token operators in ``calls``
    (``glue_calls.RENDER`` or ``TRAIN``), or (``enabled=False``) no longer in those; return how many changed. Before
    any compile of the glue (its methods are the instance's own from then)."""
    return switch_fused(unet, calls=calls, enabled=enabled, methods=_METHODS, fusable=fusable, fuse=_fused)


def _fused(transformer: Any, fused: set[str]) -> dict[str, Any]:
    enter, leave = (getattr(transformer, name) for name in _METHODS)  # the class's, bound

    def operate_on_continuous_inputs(hidden_states: torch.Tensor) -> tuple[torch.Tensor, int]:
        if not (wanted(fused) and hidden_states.is_contiguous()):
            return enter(hidden_states)
        norm = transformer.norm
        tokens = torch.ops.headshot.group_norm_tokens(hidden_states, norm.weight, norm.bias, norm.num_groups, norm.eps)
        return transformer.proj_in(tokens[0]), hidden_states.shape[1]

    def get_output_for_continuous_inputs(
        hidden_states: torch.Tensor, residual: torch.Tensor, batch_size: int, height: int, width: int, inner_dim: int
    ) -> torch.Tensor:
        if not wanted(fused):
            return leave(hidden_states, residual, batch_size, height, width, inner_dim)
        if residual.is_contiguous():
            tokens = transformer.proj_out(hidden_states).contiguous()
            return torch.ops.headshot.tokens_to_nchw(tokens, residual, height, width)
        if residual.is_contiguous(memory_format=torch.channels_last):
            # The tokens are the channels-last layout already: viewed as NCHW they add to the residual in place of
            # diffusers' copy into NCHW, which made the add mix layouts (torch's slow strided path) as well.
            tokens = transformer.proj_out(hidden_states).reshape(batch_size, height, width, inner_dim)
            return tokens.permute(0, 3, 1, 2) + residual
        return leave(hidden_states, residual, batch_size, height, width, inner_dim)

    return dict(zip(_METHODS, (operate_on_continuous_inputs, get_output_for_continuous_inputs), strict=True))
