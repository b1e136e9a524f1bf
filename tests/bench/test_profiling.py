"""The profile's account of where a GPU sat idle, on a timeline laid out by hand (a CPU has no kernels to time)."""

from __future__ import annotations

import pytest

from bench.profiling import Span, idle_by_cause


def test_idle_time_is_named_for_what_the_gpu_waited_for_and_what_the_host_ran() -> None:
    # Two overlapping kernels (two streams, one busy interval), a sampler's step on the host with a gap of 300 us,
    # then a copy to the host; launch gaps of 5 us between kernels count only as short gaps.
    kernels = [
        Span(100, 400, "Torch-Compiled Region > unet"),
        Span(300, 500, "Torch-Compiled Region > unet"),
        Span(505, 600, "aten::cat"),
        Span(900, 1000, "aten::mul"),
        Span(1200, 1250, "aten::_to_copy"),
    ]
    host = [Span(0, 80, "aten::cat"), Span(650, 850, "aten::mul"), Span(1100, 1180, "aten::_to_copy")]
    idle = idle_by_cause(kernels, host, window=(0, 1400))

    # Gaps: 0-100 (before the first kernel), 500-505 (short), 600-900, 1000-1200, 1250-1400 (the call's end).
    assert idle["short_gaps_ms"] == pytest.approx(0.005)
    assert idle["idle_ms"] == pytest.approx(0.755)
    assert idle["waiting_for"] == {
        "aten::mul": pytest.approx(0.3),
        "aten::_to_copy": pytest.approx(0.2),
        "the call's end": pytest.approx(0.15),
        "Torch-Compiled Region > unet": pytest.approx(0.1),
    }
    # Host ops only count inside gaps; the rest of each gap is the host's own Python.
    assert idle["host_during"] == {
        "Python between ops": pytest.approx(0.39),
        "aten::mul": pytest.approx(0.2),
        "aten::cat": pytest.approx(0.08),
        "aten::_to_copy": pytest.approx(0.08),
    }


def test_a_gpu_that_never_idles_has_nothing_to_name() -> None:
    kernels = [Span(0, 50, "a"), Span(52, 100, "b")]
    idle = idle_by_cause(kernels, [Span(0, 100, "aten::mm")], window=(0, 100))
    assert idle == {"idle_ms": 0.002, "short_gaps_ms": 0.002, "waiting_for": {}, "host_during": {}}
