"""Layers switched to and from the project's operators by their class: a layer keeps its weights, hooks and
place in the model, and only its ``forward`` changes (``geglu``, ``lora_linear``)."""

from __future__ import annotations

from typing import Any

__all__ = ["switch_class"]


def switch_class(model: Any, plain: type, fused: type, *, enabled: bool) -> int:
    """Make every ``plain`` layer of ``model`` (``fused`` being a subclass of it) a ``fused`` one, or with
    ``enabled=False`` a ``plain`` one again; return how many layers."""
    count = 0
    for module in model.modules():
        if isinstance(module, plain):
            module.__class__ = fused if enabled else plain
            count += 1
    return count
