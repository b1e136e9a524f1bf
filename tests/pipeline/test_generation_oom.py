"""CUDA out of memory while rendering: retried once at half the batch, then a clear error.

No CPU runs out of CUDA memory, so the fault is injected where a real one surfaces: inside the denoising loop, from
the tiny pipeline's own ``callback_on_step_end`` (the ``should_stop`` hook runs there every step).
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.diffusion.generation import generate_headshots
from pipeline.errors import OutOfGpuMemory
from pipeline.styles import STYLES
from tests.said import refused


class OutOfMemoryAtStep:
    """A ``should_stop`` that raises CUDA's out-of-memory error the first ``times`` times diffusers calls it."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.raised = 0

    def __call__(self) -> bool:
        if self.raised < self.times:
            self.raised += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return False


def test_out_of_memory_is_retried_once_at_half_the_batch(pipe: Any) -> None:
    progress: list[tuple[int, int]] = []
    fault = OutOfMemoryAtStep(times=1)
    images = generate_headshots(
        pipe,
        STYLES["studio"],
        count=4,
        seed=70,
        batch_size=4,
        steps=1,
        should_stop=fault,
        on_progress=lambda *a: progress.append(a),
    )
    assert fault.raised == 1
    assert progress == [(2, 4), (4, 4)]  # the full batch failed; two halves made all four
    assert [image.seed for image in images] == [70, 71, 72, 73]
    # The same seeds give the same pictures as an undisturbed render: the retry changed nothing a user sees.
    plain = generate_headshots(pipe, STYLES["studio"], count=1, seed=72, steps=1)
    delta = torch.tensor(list(images[2].image.getdata()), dtype=torch.float32)
    delta -= torch.tensor(list(plain[0].image.getdata()), dtype=torch.float32)
    assert float(delta.abs().mean()) < 1.0


def test_out_of_memory_twice_raises_a_clear_error_and_leaves_the_pipeline_clean(pipe: Any) -> None:
    scheduler = pipe.scheduler
    fault = OutOfMemoryAtStep(times=10)
    with refused(OutOfGpuMemory, match=r"ran out of memory .* 2 at a time.*/headshot"):
        generate_headshots(pipe, STYLES["studio"], count=4, seed=1, batch_size=4, steps=1, should_stop=fault)
    assert fault.raised == 2  # the full batch, then one retry at half: no third try
    assert pipe.scheduler is scheduler
    assert len(generate_headshots(pipe, STYLES["studio"], count=1, seed=1, steps=1)) == 1
