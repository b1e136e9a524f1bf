"""Which of a UNet's calls run a module through a fused replacement of its own methods: rendering (calls without
gradients), training (calls with them), or both; the glue modules (``resnet_glue``, ``transformer_glue``) install
theirs through ``switch_fused``.

The replacements are instance attributes shadowing the class's methods, so one UNet shared by rendering and
training (a worker's ``TrainingSlot`` trains the rendering UNet) can fuse for one and keep diffusers' maths for the
other, each switched on by its own setting, and an instance's methods are what ``acceleration`` leaves out of any
compiled glue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["RENDER", "TRAIN", "switch_fused", "wanted"]

RENDER, TRAIN = "render", "train"  # the calls without gradients, and those with
_CALLS = "_headshot_fused_calls"  # on each installed method: the set of calls it fuses, shared by a module's methods
_OWNER = "_headshot_fused_by"  # on each installed method: the ``fusable`` of the caller that installed it


def wanted(calls: set[str]) -> bool:
    """Whether the call now running is one of ``calls``."""
    return (TRAIN if torch.is_grad_enabled() else RENDER) in calls


def switch_fused(
    model: Any,
    *,
    calls: str,
    enabled: bool,
    methods: tuple[str, ...],
    fusable: Callable[[Any], bool],
    fuse: Callable[[Any, set[str]], dict[str, Callable[..., Any]]],
) -> int:
    """Fuse every ``fusable`` module of ``model`` in ``calls`` (``enabled``), or no longer in them; return how many
    modules changed. ``fuse(module, calls)`` returns its replacements of ``methods`` (name -> function), which run
    fused while ``wanted(calls)``; a module whose last calls are switched off gets the class's methods back. A module
    with any of ``methods`` of its own already (someone else's, another glue module's included: each switches only
    what its own ``fusable`` installed) is left as it is."""
    if calls not in (RENDER, TRAIN):
        raise ValueError(f"calls must be {RENDER!r} or {TRAIN!r}, got {calls!r}")
    changed = 0
    for module in model.modules():
        installed = vars(module).get(methods[0])
        # This caller's own: another glue module's methods of the same name (a ResNet block's and a sampler's are
        # both ``forward``) are not its to switch.
        fused: set[str] | None = (
            getattr(installed, _CALLS, None) if getattr(installed, _OWNER, None) is fusable else None
        )
        if enabled and fused is None and not any(name in vars(module) for name in methods) and fusable(module):
            fused = set()
            for name, function in fuse(module, fused).items():
                setattr(function, _CALLS, fused)
                setattr(function, _OWNER, fusable)
                setattr(module, name, function)
        if fused is None or (calls in fused) == enabled:
            continue
        if enabled:
            fused.add(calls)
        else:
            fused.discard(calls)
            if not fused:
                for name in methods:
                    delattr(module, name)
        changed += 1
    return changed
