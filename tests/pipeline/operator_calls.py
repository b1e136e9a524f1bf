"""``OperatorCalls``: which operators reach the dispatcher inside it, for tests that check where a module runs one of
the project's ``torch.library`` operators (``headshot::group_norm``, ``headshot::lora_linear``) and where not."""

from __future__ import annotations

from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["OperatorCalls"]


class OperatorCalls(TorchDispatchMode):
    """Inside: ``operators`` lists every operator that reaches the dispatcher, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.operators: list[Any] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.operators.append(func)
        return func(*args, **(kwargs or {}))
