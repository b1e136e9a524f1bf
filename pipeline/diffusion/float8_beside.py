"""FP8 calibration on a thread of its own, beside a worker's training compile.

A cold start calibrated its FP8 layers' input scales (eager renders of every style: 14.9 s of an H200) and only then
compiled training, whose first bucket spends ~25 s in dynamo and inductor with the GPU idle (BENCHMARKS.md 2026-12-05
twelfth session). The two need different things of the UNet. Training's graphs never read an FP8 layer's calibration
state: with gradients on, a layer that does not train in FP8 multiplies in bf16 whatever its flags say
(``float8.Float8Linear.forward``). Calibration needs the weights and nothing that training changes.

So the calibration renders run on a thread, through ``calibration_clone``: the pipeline with a copy of its UNet's
modules that shares every tensor (no memory) but not the modules' own state. That state is what the training compile
changes beside it: train mode, the training LoRA's layers and its active adapter, hooks. The scales land in the
buffers both share, and ``wait`` marks the worker's own layers calibrated. The renders are those of a calibration
before the compile, through the same weights and the same (zero) rendering slot, so the scales are the same to the
bit (``tests/pipeline/test_float8_beside.py``).

The thread mostly waits for the GPU: torch releases Python's lock while an operator runs, so the compile beside it
keeps the host.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.styles import Style

__all__ = ["Float8Calibration", "calibration_clone"]

log = logging.getLogger(__name__)


def calibration_clone(pipe: Any) -> Any:
    """A shallow copy of ``pipe`` whose UNet is a copy of its modules, and whose scheduler and tokenizers are copies:
    every tensor of every component shared, the rest its own."""
    import torch

    shared: dict[int, Any] = {}
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for module in component.modules():
                for value in vars(module).values():
                    for item in value.values() if isinstance(value, dict) else (value,):
                        if isinstance(item, torch.Tensor):
                            shared[id(item)] = item
    clone = copy.copy(pipe)
    # Past DiffusionPipeline.__setattr__, which would register the copies in the pipeline's config.
    object.__setattr__(clone, "unet", copy.deepcopy(pipe.unet, shared))
    for name in ("scheduler", "tokenizer", "tokenizer_2"):
        if getattr(pipe, name, None) is not None:
            object.__setattr__(clone, name, copy.deepcopy(getattr(pipe, name)))
    return clone


class Float8Calibration:
    """``serving.calibrated_float8`` of ``pipe``'s static FP8 layers on ``styles``, run on a thread through
    ``calibration_clone(pipe)``; ``wait`` before anything renders in FP8 or trains in it."""

    def __init__(self, pipe: Any, styles: Iterable[Style], scales_file: Path) -> None:
        self._pipe, self._styles, self._scales_file = pipe, list(styles), scales_file
        self._clone = calibration_clone(pipe)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="float8-calibration", daemon=True)
        self.reused = False  # whether the kept scales served (set by the thread)
        self.seconds = 0.0  # the thread's own time

    def start(self) -> Float8Calibration:
        self._thread.start()
        return self

    def _run(self) -> None:
        from pipeline.diffusion.serving import calibrated_float8

        started = time.monotonic()
        try:
            self.reused = calibrated_float8(self._clone, self._styles, self._scales_file)
        except BaseException as error:  # re-raised by wait(), on the start's own thread
            self._error = error
        finally:
            self.seconds = time.monotonic() - started

    def wait(self) -> float:
        """Block until the scales are set; mark ``pipe``'s layers calibrated. Returns the seconds waited. Raises what
        the calibration raised."""
        from pipeline.diffusion.float8_scales import static_layers

        waited = time.monotonic()
        self._thread.join()
        if self._error is not None:
            raise self._error
        clone_layers = static_layers(self._clone.unet)
        layers = static_layers(self._pipe.unet)
        if list(clone_layers) != list(layers):  # the clone is made after the layers: a change between is a bug
            raise RuntimeError("the UNet's FP8 layers changed while they were calibrated beside the start")
        for name, layer in layers.items():
            layer.calibrated = clone_layers[name].calibrated
        self._clone = None
        return time.monotonic() - waited
