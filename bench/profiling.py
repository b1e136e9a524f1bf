"""Where a benchmark's GPU time goes: kernels sorted into kinds of work by name, and one call profiled by kind, with
the share of its wall time the GPU sat idle (``torch.profiler``). Shared by the benchmarks that profile."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bench.measure import measured

__all__ = ["KERNEL_KINDS", "gpu_profile", "kernel_kind"]

# Kernel name -> kind, first match wins. Inductor's own kernels (``triton_*``) are fused elementwise work whatever
# op names they carry (an FP8 layer's scaling is named after ``_scaled_mm``); cuDNN's convolutions are implicit
# GEMMs ("sm90_xmma_fprop_implicit_gemm"), so they are matched before the products; the layout conversions cuDNN
# runs around a convolution on an NCHW tensor are a kind of their own.
KERNEL_KINDS = (
    ("attention", re.compile(r"flash|fmha|attention|sdpa", re.IGNORECASE)),
    ("FP8 scaling", re.compile(r"^triton_.*amax", re.IGNORECASE)),
    ("norms", re.compile(r"^triton_.*(norm|welford)", re.IGNORECASE)),
    ("elementwise and other", re.compile(r"^triton_")),
    # A same-dtype ("nocast") direct copy is a ``.contiguous()``: eager ops that want the other layout make them.
    ("layout conversions", re.compile(r"nchwToNhwc|nhwcToNchw|nocast<at::native::direct_copy", re.IGNORECASE)),
    ("convolutions", re.compile(r"conv|fprop|dgrad|wgrad|winograd|implicit", re.IGNORECASE)),
    ("matrix products", re.compile(r"gemm|nvjet|xmma|cutlass|scaled_mm|addmm|matmul|\bmm\b|linear", re.IGNORECASE)),
    ("norms", re.compile(r"norm|welford", re.IGNORECASE)),
)


def kernel_kind(name: str) -> str:
    """The kind of work a GPU kernel (or, on a CPU, an aten op) does, by its name (``KERNEL_KINDS``)."""
    return next((kind for kind, pattern in KERNEL_KINDS if pattern.search(name)), "elementwise and other")


def gpu_profile(device: str, call: Callable[[], Any], *, label: str) -> dict[str, Any]:
    """One call under ``torch.profiler``: wall time, GPU kernel time by kind, the share of wall time with no kernel
    running (host work, syncs, launch gaps), and the costliest kernels."""
    from torch.profiler import DeviceType, ProfilerActivity, profile

    on_cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as profiler, measured(device) as wall:
        call()
    by_name: dict[str, float] = {}
    spans: list[tuple[float, float]] = []
    for event in profiler.events():
        if on_cuda and event.device_type == DeviceType.CUDA:
            by_name[event.name] = by_name.get(event.name, 0.0) + event.device_time
            spans.append((event.time_range.start, event.time_range.end))
    busy_us, end = 0.0, float("-inf")
    for start, stop in sorted(spans):  # union of kernel intervals: overlapping streams count once
        if stop > end:
            busy_us += stop - max(start, end)
            end = stop
    kinds: dict[str, float] = {}
    for name, value in by_name.items():
        kind = kernel_kind(name)
        kinds[kind] = kinds.get(kind, 0.0) + value
    return {
        "variant": f"profile: {label}",
        "wall_s": round(wall.seconds, 3),
        "gpu_busy_s": round(busy_us / 1e6, 3),
        "gpu_idle_share_of_wall": round(1 - busy_us / 1e6 / max(wall.seconds, 1e-9), 3),
        "kernel_s_by_kind": {kind: round(value / 1e6, 3) for kind, value in sorted(kinds.items(), key=lambda i: -i[1])},
        "costliest": [
            {"name": name[:120], "s": round(value / 1e6, 3)}
            for name, value in sorted(by_name.items(), key=lambda i: -i[1])[:15]
        ],
    }
