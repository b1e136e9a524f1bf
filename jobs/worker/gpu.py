"""A worker's GPU taken in turns: one job's torch section at a time, while its other jobs' host work goes on.

A job is mostly GPU work, but not only: fetching blobs, the image safety check, likeness ranking, PNG encoding and
uploads run on the host, and with one job per worker the GPU idles through all of them. With
``HEADSHOT_WORKER_JOBS`` above one, arq runs that many jobs at once and each torch section (a render, a face pass, a
training) waits here for its turn, so the model, its LoRA slots and the GPU's memory serve one section at a time as
before, and the next job's section starts as soon as the last one's ends.

``resting`` counts the jobs that are done with the GPU for now: each has had a section and asks for no other right
away (``run(more=True)`` says it will). With ``HEADSHOT_WORKER_OVERLAP`` a worker takes one job more than its
``HEADSHOT_WORKER_JOBS`` exactly while all of its other jobs rest (``jobs.worker.app``): the next request renders
while the last one's face search and PNGs run on the host, and no job is taken only to wait for the GPU.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from jobs.worker.threads import ProgressReporter, run_in_thread

__all__ = ["GpuTurns", "allocator_retries"]

log = logging.getLogger(__name__)


class GpuTurns:
    """Runs torch sections one at a time on one thread of their own, first come first served (``asyncio.Lock``
    wakes its waiters in order). A job cancelled while it waits leaves the queue at once: nothing was started."""

    def __init__(self, observe_wait: Callable[[float], None] | None = None) -> None:
        self._lock = asyncio.Lock()
        # Every section on one thread: torch keeps per-thread state (CUDA's cuBLAS handles and their workspaces, a
        # CPU's OpenMP pool), which sections hopping across the loop's default pool made once per thread.
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")
        self._observe_wait = observe_wait
        self.turns = 0  # sections run
        self.waited = 0  # sections that found another job's section running and waited for it
        self._resting: set[asyncio.Task[Any]] = set()

    @property
    def resting(self) -> int:
        """Running jobs done with the GPU for now (module docstring)."""
        return len(self._resting)

    def rest(self) -> None:
        """The calling job (its asyncio task) asks for no section for now; it rests until its next ``run`` or its
        end, however it ends."""
        task = asyncio.current_task()
        if task is not None and task not in self._resting:
            self._resting.add(task)
            task.add_done_callback(self._resting.discard)

    async def run(self, progress: ProgressReporter, work: Callable[[], Any], *, more: bool = False) -> Any:
        """``work`` in a thread once the GPU is free (``run_in_thread``: a cancel stops it and waits for it); the job
        then rests (``resting``) unless ``more``: it asks for another section right after its host work (an
        upscale's face pass), and rests only when it says so (``rest``) or ends."""
        asked = time.monotonic()
        busy = self._lock.locked()
        self._resting.discard(asyncio.current_task())  # type: ignore[arg-type,unused-ignore]
        async with self._lock:
            self.turns += 1
            self.waited += busy
            if self._observe_wait is not None:
                self._observe_wait(time.monotonic() - asked)
            result = await run_in_thread(progress, lambda: _telling_allocator(work), self._thread)
        if not more:
            self.rest()
        return result

    def close(self) -> None:
        """Let the torch thread end once its section (if any) is done."""
        self._thread.shutdown(wait=False)


def allocator_retries() -> int:
    """How often torch's CUDA allocator found no free block, released its cached ones and tried again (a slow,
    synchronising path) on the current device; 0 where CUDA is not in use."""
    return int(_allocator_stats().get("num_alloc_retries", 0))


def _allocator_stats() -> dict[str, Any]:
    """torch's CUDA allocator's counters on the current device (``torch.cuda.memory_stats``); empty without CUDA."""
    torch = sys.modules.get("torch")  # loaded with the model; never imported just for this
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return dict(torch.cuda.memory_stats())


def _telling_allocator(work: Callable[[], Any]) -> Any:
    """``work``, and a line in the job's log when the allocator had to retry during it (a warning) or reserved more
    memory from CUDA (information).

    Why: a training's CUDA graphs keep their memory pool reserved, and rendering must fit in what is left; near the
    limit every retry frees and re-asks for memory while the GPU waits, which shows only as slower renders (one
    worker's requests were, once, cause unknown; BENCHMARKS.md, 2026-12-04 third session). And the first request
    after a training takes more GPU time than the ones after it, every run (fourth and fifth sessions): a section that
    had to ``cudaMalloc`` says so. Counted per section, so the log says which job
    paid."""
    before = _allocator_stats()
    try:
        return work()
    finally:
        after = _allocator_stats()

        def grew(counter: str) -> int:  # cumulative counters: what this section added
            return int(after.get(counter, 0)) - int(before.get(counter, 0))

        if grew("num_alloc_retries"):
            log.warning(
                "GPU memory nearly full: the allocator freed its cache and retried %d times in this job",
                grew("num_alloc_retries"),
            )
        if grew("segment.all.allocated"):
            log.info(
                "the allocator reserved %.2f GiB more from CUDA in this job (new segments: %d)",
                grew("reserved_bytes.all.allocated") / 2**30,
                grew("segment.all.allocated"),
            )
