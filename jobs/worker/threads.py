"""Torch work off the event loop: a thread per job, throttled progress events out of it, and a stop flag into it.

The loop keeps arq's heartbeat, abort checks and progress events moving while the GPU works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from jobs.contract.events import Progress
from jobs.contract.stream import EventPublisher

__all__ = ["ProgressReporter", "run_in_thread"]


class ProgressReporter:
    """Turns callbacks from the torch thread into throttled ``progress`` events on the event loop."""

    def __init__(self, events: EventPublisher, user_key: str, job_id: str, interval_s: float) -> None:
        self._events = events
        self._loop = asyncio.get_running_loop()
        self._user_key = user_key
        self._job_id = job_id
        self._interval_s = interval_s
        self._last = 0.0
        self.stop = threading.Event()

    def report(self, done: int, total: int, *, eta_s: float | None = None, loss: float | None = None) -> None:
        now = time.monotonic()
        if done < total and now - self._last < self._interval_s:
            return
        self._last = now
        event = Progress(user_key=self._user_key, job_id=self._job_id, done=done, total=total, eta_s=eta_s, loss=loss)
        asyncio.run_coroutine_threadsafe(self._events.publish(event), self._loop)


async def run_in_thread(
    progress: ProgressReporter, work: Callable[[], Any], executor: concurrent.futures.Executor
) -> Any:
    """Run torch work in a thread of ``executor`` with the caller's context (its log fields); on cancellation
    (``/cancel`` or timeout) tell the thread to stop and wait."""
    context = contextvars.copy_context()
    running = asyncio.get_running_loop().run_in_executor(executor, context.run, work)
    task = asyncio.ensure_future(running)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        progress.stop.set()
        # The training loop checks the flag every step; wait so the pipeline is clean before the next job.
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # the thread's JobCancelled: retrieved, so asyncio does not log it as lost
        raise
