"""Where a benchmark's GPU time goes: kernels sorted into kinds of work by name, and one call profiled by kind, with
the share of its wall time the GPU sat idle (``torch.profiler``). Shared by the benchmarks that profile.

Each profile lists the costliest kernels overall and the costliest of each kind: a kind's total says where time
goes, its kernels' names (inductor names a fused kernel after the ops it fuses) say what to fuse or replace next."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bench.measure import measured

__all__ = ["KERNEL_KINDS", "gpu_profile", "kernel_kind", "kernel_times", "kernel_summary"]

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


def kernel_times(profiler: Any, *, on_cuda: bool) -> dict[str, float]:
    """Microseconds by name in a finished ``torch.profiler`` run: each GPU kernel's device time, or on a CPU each
    aten op's self time."""
    from torch.profiler import DeviceType

    times: dict[str, float] = {}
    for event in profiler.events():
        if on_cuda and event.device_type == DeviceType.CUDA:
            times[event.name] = times.get(event.name, 0.0) + event.device_time
        elif not on_cuda and event.device_type == DeviceType.CPU and event.name.startswith("aten::"):
            times[event.name] = times.get(event.name, 0.0) + event.self_cpu_time_total
    return times


def kernel_summary(
    times: dict[str, float], *, unit: str, scale: float, costliest: int = 15, per_kind: int = 8, by_kind: str = ""
) -> dict[str, Any]:
    """``times`` (``kernel_times``) by kind (under ``by_kind``, else "<unit>_by_kind"), the ``costliest`` kernels, and
    the ``per_kind`` costliest of each kind, each figure multiplied by ``scale`` and named ``unit`` (e.g.
    "ms_per_call")."""

    def figure(value: float) -> float:
        return round(value * scale, 4)

    ranked = sorted(times.items(), key=lambda item: -item[1])
    kinds: dict[str, float] = {}
    of_kind: dict[str, list[tuple[str, float]]] = {}
    for name, value in ranked:
        kind = kernel_kind(name)
        kinds[kind] = kinds.get(kind, 0.0) + value
        of_kind.setdefault(kind, []).append((name, value))
    return {
        by_kind or f"{unit}_by_kind": {
            kind: figure(value) for kind, value in sorted(kinds.items(), key=lambda item: -item[1])
        },
        "costliest": [{"name": name[:120], unit: figure(value)} for name, value in ranked[:costliest]],
        "costliest_by_kind": {
            kind: [{"name": name[:120], unit: figure(value)} for name, value in names[:per_kind]]
            for kind, names in of_kind.items()
        },
    }


def gpu_profile(device: str, call: Callable[[], Any], *, label: str) -> dict[str, Any]:
    """One call under ``torch.profiler``: wall time, GPU kernel time by kind, the share of wall time with no kernel
    running (host work, syncs, launch gaps), and the costliest kernels, overall and of each kind."""
    from torch.profiler import DeviceType, ProfilerActivity, profile

    on_cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as profiler, measured(device) as wall:
        call()
    spans = [
        (event.time_range.start, event.time_range.end)
        for event in profiler.events()
        if on_cuda and event.device_type == DeviceType.CUDA
    ]
    busy_us, end = 0.0, float("-inf")
    for start, stop in sorted(spans):  # union of kernel intervals: overlapping streams count once
        if stop > end:
            busy_us += stop - max(start, end)
            end = stop
    times = kernel_times(profiler, on_cuda=on_cuda) if on_cuda else {}
    return {
        "variant": f"profile: {label}",
        "wall_s": round(wall.seconds, 3),
        "gpu_busy_s": round(busy_us / 1e6, 3),
        "gpu_idle_share_of_wall": round(1 - busy_us / 1e6 / max(wall.seconds, 1e-9), 3),
        **kernel_summary(times, unit="s", scale=1e-6, by_kind="kernel_s_by_kind"),
    }
