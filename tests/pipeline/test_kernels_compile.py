"""The project's Triton kernels compile for the H200 on any machine, at the sizes SDXL's calls launch them with.

The interpreter (``test_group_norm``, ``test_geglu``, ``test_lora_linear``) checks their maths but not what only the
GPU's compiler checks: types through the kernels' loops, layouts, register and shared-memory needs. Triton's
compiler runs without a GPU, so every launch the operators make is built here for compute capability 9.0, from the
host code down to a cubin, each at the sizes (and so the integer widths) of a real call (``bench.kernel_compile``).
ptxas's report must show no register spills (a spilling kernel round-trips its registers through memory) and few
enough registers to keep ``RESIDENT_WARPS`` warps an SM: these kernels stream memory, and a tile whose values take
too many registers a thread leaves too few loads in flight (the NHWC input gradient at 4 warps held 32 values a
thread in 191 registers, 8 warps an SM).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.kernel_compile import sdxl_launches

pytest.importorskip("triton", reason="the Triton kernels need triton: `make test` installs it")

RESIDENT_WARPS = 16
LAUNCHES = sdxl_launches()


@pytest.mark.parametrize("label", LAUNCHES)
def test_each_kernel_compiles_for_the_h200_without_spills_and_with_warps_to_spare(
    label: str,
    h200_compile: Callable[[str, list[tuple[str, tuple[Any, ...]]]], tuple[list[Any], dict[str, dict[str, int]]]],
) -> None:
    module, calls = LAUNCHES[label]
    compiled, figures = h200_compile(module, calls)
    # One kernel a call, but a norm's three: its moments, their merge, the pass using them.
    kernels_a_call = 3 if module.startswith("group_norm") or label.startswith("group norm") else 1
    assert len(compiled) == kernels_a_call * len(calls)
    assert all(kernel.asm["cubin"] for kernel in compiled)
    for name, kernel_figures in figures.items():
        spills, warps = kernel_figures["spill_bytes"], kernel_figures["resident_warps"]
        assert spills == 0 and warps >= RESIDENT_WARPS, (name, kernel_figures)
