"""One FP8 copy of an input that several static FP8 layers read: an attention's q, k and v projections.

A transformer block's self-attention multiplies one normalised tensor by ``to_q``, ``to_k`` and ``to_v``, and its
cross-attention the prompt's embeddings by ``to_k`` and ``to_v``. Each static ``Float8Linear`` casts its input by its
own scale, so a compiled block's norm kernel wrote three FP8 copies of the same tensor (the render call's costliest
norm, ``triton_red_fused__scaled_mm__to_copy_clamp_div_native_layer_norm``, BENCHMARKS.md 2026-12-05 sixteenth
session). The layers' calibrated scales are equal anyway (calibration sees the same tensor in all three), so:

- ``share_input_scales`` gives the layers that read one tensor one scale tensor: compiled, their casts are then the
  same computation on the same graph inputs;
- ``SameComputations`` (a post-grad pass for inductor, ``INDUCTOR_OPTIONS``) merges such repeated computations, which
  inductor does not do for graphs without gradients, so the norm writes one FP8 copy that the three products read.

Nothing a layer computes changes: the shared scale is the one each would have had (calibration takes the group's
largest input, which is each member's), and a merged node is the same operator on the same arguments.
"""

from __future__ import annotations

from typing import Any

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

from pipeline.diffusion.float8 import Float8Linear

__all__ = ["INDUCTOR_OPTIONS", "SameComputations", "compile_options", "input_groups", "share_input_scales"]


def _static(layer: Any) -> Float8Linear | None:
    """``layer`` (or the base layer of a peft LoRA around it) when it is a static FP8 layer, else None."""
    base = getattr(layer, "base_layer", layer)
    return base if isinstance(base, Float8Linear) and base.scaling == "static" else None


def input_groups(unet: Any) -> list[list[Float8Linear]]:
    """The groups of ``unet``'s static FP8 layers that read one tensor: each attention's q, k and v (self-attention),
    or its k and v (cross-attention: both read the prompt's embeddings); groups of one are left out."""
    groups = []
    for module in unet.modules():
        if not all(hasattr(module, name) for name in ("to_q", "to_k", "to_v", "is_cross_attention")):
            continue
        names = ("to_k", "to_v") if module.is_cross_attention else ("to_q", "to_k", "to_v")
        layers = [_static(getattr(module, name)) for name in names]
        if all(layer is not None for layer in layers):
            groups.append([layer for layer in layers if layer is not None])
    return groups


def share_input_scales(unet: Any, *, enabled: bool = True) -> int:
    """Give each of ``unet``'s ``input_groups`` one input scale tensor (the first layer's, holding the group's
    largest scale), or with ``enabled=False`` each layer a copy of its own again; return how many groups.

    Call it after moving the model to its device (``.to`` gives each module its own copy again) and before compiling
    (graphs read the scale tensors they saw). Calibration keeps groups whole (``float8_scales.calibrate_float8``).
    """
    groups = input_groups(unet)
    for group in groups:
        if enabled:
            shared = group[0].input_scale
            shared.copy_(torch.stack([layer.input_scale for layer in group]).amax())  # NaN until calibrated stays NaN
            for layer in group[1:]:
                layer.input_scale = shared
        else:
            for layer in group[1:]:
                if layer.input_scale is group[0].input_scale:
                    layer.input_scale = group[0].input_scale.clone()
    return len(groups)


class SameComputations(CustomGraphPass):
    """Inductor's post-grad pass that merges nodes computing the same pure operator on the same arguments into the
    first of them (common subexpressions), in graphs with or without gradients.

    A node counts as pure when its operator mutates none of its arguments and draws no random numbers. A node that
    mutates something ends every merge across it, since a later read of the mutated tensor is a new value. A node the
    graph returns stays its own tensor.
    """

    def __call__(self, graph: torch.fx.Graph) -> None:
        seen: dict[tuple[Any, ...], torch.fx.Node] = {}
        for node in list(graph.nodes):
            if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
                if node.op == "call_function":
                    seen.clear()  # a Python function or higher-order operator: what it touches is not known here
                continue
            if node.target._schema.is_mutable or torch.Tag.nondeterministic_seeded in node.target.tags:
                seen.clear()
                continue
            if any(user.op == "output" for user in node.users):
                continue  # the graph's caller gets tensors of its own, never one twice
            key = (node.target, _frozen(node.args), _frozen(node.kwargs))
            try:
                first = seen.setdefault(key, node)
            except TypeError:  # an argument that cannot be a key (a symbolic size): never merged
                continue
            if first is not node:
                node.replace_all_uses_with(first)
                graph.erase_node(node)

    def uuid(self) -> Any:
        return get_hash_for_files((__file__,))


def _frozen(value: Any) -> Any:
    """``value`` (a node's arguments) as a key: nodes by identity, other values with their type (1 is not 1.0)."""
    if isinstance(value, dict):
        return tuple(sorted((key, _frozen(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, *(_frozen(item) for item in value))
    if isinstance(value, torch.fx.Node):
        return value
    if isinstance(value, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return str(value)
    return (type(value).__name__, value)


# torch.compile's ``options`` for graphs whose FP8 layers share their inputs' scales.
INDUCTOR_OPTIONS = {"post_grad_custom_pre_pass": SameComputations()}


def compile_options(module: Any, backend: str) -> dict[str, Any] | None:
    """torch.compile's ``options`` for ``module`` (a block of a UNet) with ``backend``: ``INDUCTOR_OPTIONS`` where
    inductor compiles layers of it that share an input scale (``share_input_scales``), else None."""
    if backend != "inductor":
        return None
    shared = any(layer.input_scale is group[0].input_scale for group in input_groups(module) for layer in group[1:])
    return INDUCTOR_OPTIONS if shared else None
