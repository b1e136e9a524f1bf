"""The project's Triton kernels compile for the H200 on any machine, at the sizes SDXL's calls launch them with.

The interpreter (``test_group_norm``, ``test_geglu``) checks their maths but not what only the GPU's compiler
checks: types through the kernels' loops, layouts, register and shared-memory needs. Triton's compiler runs without
a GPU, so every launch the operators make is built here for compute capability 9.0, from the host code down to a
cubin, each at the sizes (and so the integer widths) of a real call. ptxas's report must show no register spills (a
spilling kernel round-trips its registers through memory) and few enough registers to keep 16 warps an SM resident.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.pipeline.triton_kernels import H200, compile_launches

pytest.importorskip("triton", reason="the Triton kernels need triton: `make test` installs it")


# An H100/H200 SM's register file, and the fewest warps a kernel should keep resident on one: these kernels stream
# memory, and a tile whose values take too many registers a thread leaves too few loads in flight (the NHWC input
# gradient held 32 values a thread in 191 registers at 4 warps: 8 warps an SM).
REGISTERS_AN_SM = 65536
RESIDENT_WARPS = 16


def _resident_warps(registers: int, warps: int) -> int:
    """Warps of one kernel an SM holds at once, as its registers allow (each warp's allocated in 256-register units,
    at most 64 warps an SM)."""
    a_warp = -(-registers * 32 // 256) * 256
    return min(REGISTERS_AN_SM // (a_warp * warps) * warps, 64)


@pytest.fixture
def check_ptxas(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> Any:
    """``check(compiled)``: ptxas's report of each kernel compiled since (the verbose log Triton asks ptxas for, and
    prints when told to; a fresh Triton cache, so each one really goes through ptxas) shows no register spills and
    registers that leave ``RESIDENT_WARPS`` resident; returns {kernel: (registers, resident warps)}."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    monkeypatch.setenv("TRITON_DUMP_PTXAS_LOG", "1")

    def check(compiled: list[Any]) -> dict[str, tuple[int, int]]:
        log = capfd.readouterr()
        pattern = r"properties for (\w+)\n\s*\d+ bytes stack frame, (\d+) bytes spill stores.*\n.*Used (\d+) registers"
        found = re.findall(pattern, log.out + log.err)
        assert len(found) == len(compiled), found
        figures = {}
        for (name, spilled, registers), kernel in zip(found, compiled, strict=True):
            resident = _resident_warps(int(registers), kernel.metadata.num_warps)
            assert int(spilled) == 0 and resident >= RESIDENT_WARPS, (name, spilled, registers, resident)
            figures[name] = (int(registers), resident)
        return figures

    return check


def _meta(*shape: int, dtype: torch.dtype = torch.bfloat16, layout: torch.memory_format | None = None) -> Any:
    tensor = torch.empty(shape, device="meta", dtype=dtype)
    return tensor if layout is None else tensor.contiguous(memory_format=layout)


def _norm_calls(suffix: str, shape: tuple[int, ...], dtype: torch.dtype, layout: torch.memory_format) -> list[Any]:
    x = _meta(*shape, dtype=dtype, layout=layout)
    weight, bias = _meta(shape[1], dtype=dtype), _meta(shape[1], dtype=dtype)
    stats = _meta(shape[0], 32, dtype=torch.float32)
    return [
        (f"group_norm_forward_{suffix}", (x, weight, bias, 32, 1e-5)),
        (f"group_norm_backward_{suffix}", (x, x, weight, stats, stats, 32)),
    ]


# A training call's largest norms (batch 16 at 1024 px), and a job's 20 selfie crops through the VAE encoder's first
# norms, whose tensors pass 2**31 elements.
SIZES = {"training": ((16, 320, 128, 128), torch.bfloat16), "encoder": ((20, 128, 1024, 1024), torch.float32)}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("module", "suffix", "layout"),
    [("group_norm_kernel", "nchw", torch.contiguous_format), ("group_norm_nhwc_kernel", "nhwc", torch.channels_last)],
)
def test_the_group_norm_kernels_compile_for_the_h200(
    module: str, suffix: str, layout: torch.memory_format, size: str, check_ptxas: Any
) -> None:
    shape, dtype = SIZES[size]
    compiled = compile_launches(module, _norm_calls(suffix, shape, dtype, layout), H200)
    assert len(compiled) == 6  # three kernels forward, three backward
    assert all(kernel.asm["cubin"] for kernel in compiled)
    check_ptxas(compiled)


def test_the_geglu_kernels_compile_for_the_h200(check_ptxas: Any) -> None:
    projected = _meta(16 * 4096, 2 * 2560)  # the 640-channel level's gate at batch 16, 1024 px
    compiled = compile_launches(
        "geglu_kernel",
        [("geglu_forward_rows", (projected,)), ("geglu_backward_rows", (projected, projected[:, :2560]))],
        H200,
    )
    assert len(compiled) == 2 and all(kernel.asm["cubin"] for kernel in compiled)
    check_ptxas(compiled)
