"""Where a benchmark's GPU time goes: kernels sorted into kinds of work by name, and one call profiled by kind, with
the share of its wall time the GPU sat idle (``torch.profiler``). Shared by the benchmarks that profile.

Each profile lists the costliest kernels overall and the costliest of each kind: a kind's total says where time
goes, its kernels' names (inductor names a fused kernel after the ops it fuses) say what to fuse or replace next."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from bench.measure import measured

__all__ = ["KERNEL_KINDS", "Span", "gpu_profile", "idle_by_cause", "kernel_kind", "kernel_summary", "kernel_times"]

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
    # ``token_layout_kernel``'s transpose back from a transformer's tokens (with its exit's residual add) too.
    ("layout conversions", re.compile(r"nchwToNhwc|nhwcToNchw|nocast<at::native::direct_copy|^_tokens_", re.I)),
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


class Span(NamedTuple):
    """One profiled interval in microseconds: a GPU kernel (``name``: the host op that launched it) or a host op."""

    start: float
    end: float
    name: str


def _busy(kernels: Sequence[Span]) -> list[tuple[float, float]]:
    """The union of the kernels' intervals, in order (overlapping streams count once)."""
    merged: list[tuple[float, float]] = []
    for start, end, _ in sorted(kernels):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def idle_by_cause(
    kernels: Sequence[Span], host_ops: Sequence[Span], *, window: tuple[float, float], least_us: float = 20.0
) -> dict[str, Any]:
    """Where the GPU sat idle inside ``window``, in milliseconds, two ways.

    ``waiting_for``: each idle gap of at least ``least_us`` by the host op that launched the kernel ending it (what
    the GPU waited for; "the call's end" for the gap after the last kernel). ``host_during``: the same gaps' time by
    the outermost host ops (``host_ops``) running in them, and "Python between ops" where none ran (the host's own
    code: a sampler's arithmetic on Python numbers, PNG encoding, waiting on a lock). Gaps shorter than
    ``least_us`` are one kernel launched after another (a launch costs a few microseconds); their sum is
    ``short_gaps_ms``."""
    busy = _busy(kernels)
    starts = [start for start, _ in busy] + [window[1]]
    gaps = zip([window[0]] + [end for _, end in busy], starts, strict=True)
    launched_by = {kernel.start: kernel.name for kernel in kernels}
    ops = sorted(host_ops)  # outermost ops of one thread: disjoint, so sorted by start is sorted by end
    op_ends = [op.end for op in ops]
    waiting: dict[str, float] = {}
    during: dict[str, float] = {}
    short = 0.0
    for start, end in gaps:
        length = end - start
        if length <= 0:
            continue
        if length < least_us:
            short += length
            continue
        cause = launched_by.get(end, "the call's end")
        waiting[cause] = waiting.get(cause, 0.0) + length
        covered = 0.0
        index = bisect.bisect_right(op_ends, start)
        while index < len(ops) and ops[index].start < end:
            op_start, op_end, name = ops[index]
            index += 1
            overlap = min(op_end, end) - max(op_start, start)
            during[name] = during.get(name, 0.0) + overlap
            covered += overlap
        during["Python between ops"] = during.get("Python between ops", 0.0) + max(0.0, length - covered)

    def ranked(times: dict[str, float]) -> dict[str, float]:
        top = sorted(times.items(), key=lambda item: -item[1])[:12]
        return {name[:100]: round(value / 1e3, 3) for name, value in top if value >= 0.5}

    return {
        "idle_ms": round(sum(waiting.values()) / 1e3 + short / 1e3, 3),
        "short_gaps_ms": round(short / 1e3, 3),
        "waiting_for": ranked(waiting),
        "host_during": ranked(during),
    }


def _spans(profiler: Any) -> tuple[list[Span], list[Span]]:
    """(each GPU kernel, named for the host op that launched it; each outermost host op of the thread that launched
    most kernels) from a finished ``torch.profiler`` run."""
    from torch.profiler import DeviceType

    events = list(profiler.events())
    # Ops and annotations only: the CUDA runtime's calls carry ids of another numbering (``linked_correlation_id``
    # names the op a runtime call or kernel belongs to).
    host = {
        event.id: event
        for event in events
        if event.device_type == DeviceType.CPU and not event.is_async and event.linked_correlation_id == 0
    }

    def outermost(event: Any) -> Any:
        while event.cpu_parent is not None:
            event = event.cpu_parent
        return event

    kernels: list[Span] = []
    threads: dict[int, int] = {}
    for event in events:
        if event.device_type != DeviceType.CUDA:
            continue
        launcher = host.get(event.linked_correlation_id)
        name = "unknown"
        if launcher is not None:
            top = outermost(launcher)
            name = launcher.name if top is launcher else f"{top.name} > {launcher.name}"
            threads[launcher.thread] = threads.get(launcher.thread, 0) + 1
        kernels.append(Span(event.time_range.start, event.time_range.end, name))
    main_thread = max(threads, key=threads.__getitem__) if threads else None
    tops = [
        Span(event.time_range.start, event.time_range.end, event.name)
        for event in host.values()
        if event.cpu_parent is None and event.thread == main_thread
    ]
    return kernels, tops


def gpu_profile(device: str, call: Callable[[], Any], *, label: str) -> dict[str, Any]:
    """One call under ``torch.profiler``: wall time, GPU kernel time by kind, the share of wall time with no kernel
    running (host work, syncs, launch gaps) and what the GPU waited for in it (``idle_by_cause``), and the costliest
    kernels, overall and of each kind."""
    from torch.profiler import ProfilerActivity, profile

    on_cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as profiler, measured(device) as wall:
        call()
    kernels, host_ops = _spans(profiler) if on_cuda else ([], [])
    busy_us = sum(end - start for start, end in _busy(kernels))
    times = kernel_times(profiler, on_cuda=on_cuda) if on_cuda else {}
    result = {
        "variant": f"profile: {label}",
        "wall_s": round(wall.seconds, 3),
        "gpu_busy_s": round(busy_us / 1e6, 3),
        "gpu_idle_share_of_wall": round(1 - busy_us / 1e6 / max(wall.seconds, 1e-9), 3),
        **kernel_summary(times, unit="s", scale=1e-6, by_kind="kernel_s_by_kind"),
    }
    if kernels and host_ops:
        window = (min(op.start for op in host_ops), max(op.end for op in host_ops))
        result["gpu_idle"] = idle_by_cause(kernels, host_ops, window=window)
    return result
