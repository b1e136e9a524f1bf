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

from pathlib import Path

import pytest

from bench.kernel_compile import H200, compile_launches, ptxas_figures, sdxl_launches

pytest.importorskip("triton", reason="the Triton kernels need triton: `make test` installs it")

RESIDENT_WARPS = 16
LAUNCHES = sdxl_launches()


@pytest.mark.parametrize("label", LAUNCHES)
def test_each_kernel_compiles_for_the_h200_without_spills_and_with_warps_to_spare(
    label: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # ptxas's verbose log printed for each kernel, none taken from a cache unlogged.
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    monkeypatch.setenv("TRITON_DUMP_PTXAS_LOG", "1")
    monkeypatch.setenv("TRITON_ALWAYS_COMPILE", "1")
    module, calls = LAUNCHES[label]
    compiled = compile_launches(module, calls, H200)
    # One kernel a call, but a norm's three: its moments, their merge, the pass using them.
    kernels_a_call = 3 if module.startswith("group_norm") or label.startswith("group norm") else 1
    assert len(compiled) == kernels_a_call * len(calls)
    assert all(kernel.asm["cubin"] for kernel in compiled)
    for name, figures in ptxas_figures(capfd.readouterr().out, compiled).items():
        assert figures["spill_bytes"] == 0 and figures["resident_warps"] >= RESIDENT_WARPS, (name, figures)
