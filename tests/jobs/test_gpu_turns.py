"""A worker's GPU sections on a CUDA GPU: a section whose allocations made torch's allocator free its cache and retry
says so in the job's log (the slow path a training's reserved graph pool can push rendering onto), and one that
reserved more memory from CUDA says how much (what the first request after a training may pay for)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import torch

from jobs.worker.gpu import GpuTurns, allocator_retries
from jobs.worker.threads import ProgressReporter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA allocator's retries need a CUDA GPU")

MIB = 2**20


def test_a_section_that_made_the_allocator_retry_is_logged_and_one_that_did_not_is_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    # A cap 768 MiB above what torch holds: a cached 512 MiB block, then a 640 MiB ask that fits only once the cache
    # is released (torch's allocator counts that release-and-try-again as a retry).
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + 768 * MIB) / total)

    def cached_then_larger() -> None:
        block = torch.empty(512 * MIB, dtype=torch.uint8, device="cuda")
        del block  # kept in torch's cache, not given back
        torch.empty(640 * MIB, dtype=torch.uint8, device="cuda")

    def small() -> Any:
        return torch.ones(1024, device="cuda").sum().item()

    async def sections() -> None:  # the sections report no progress: no events publisher
        turns = GpuTurns()
        progress = ProgressReporter(None, "local:a", "job", 1.0)  # type: ignore[arg-type]
        await turns.run(progress, small)
        assert "allocator" not in caplog.text
        await turns.run(progress, cached_then_larger)
        turns.close()

    before = allocator_retries()
    try:
        with caplog.at_level(logging.WARNING, logger="jobs.worker.gpu"):
            asyncio.run(sections())
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert allocator_retries() > before
    assert "the allocator freed its cache and retried 1 times in this job" in caplog.text


def test_a_section_that_reserved_memory_from_cuda_says_how_much_and_one_that_reused_the_cache_is_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    torch.cuda.empty_cache()

    def small() -> Any:
        return torch.ones(1024, device="cuda").sum().item()

    def larger() -> None:
        torch.empty(640 * MIB, dtype=torch.uint8, device="cuda")

    async def sections() -> None:
        turns = GpuTurns()
        progress = ProgressReporter(None, "local:a", "job", 1.0)  # type: ignore[arg-type]
        await turns.run(progress, small)  # may reserve a small segment the first time
        caplog.clear()
        await turns.run(progress, small)  # the same block again, from the cache
        assert "reserved" not in caplog.text
        await turns.run(progress, larger)
        turns.close()

    with caplog.at_level(logging.INFO, logger="jobs.worker.gpu"):
        asyncio.run(sections())
    torch.cuda.empty_cache()
    assert "the allocator reserved 0.62 GiB more from CUDA in this job (new segments: 1)" in caplog.text
