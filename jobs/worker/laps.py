"""A job's seconds stage by stage, for the one log line that says where a job's time went, and the seconds Python's
garbage collector stopped the process meanwhile."""

from __future__ import annotations

import gc
import time

__all__ = ["CollectionClock", "Laps"]


class CollectionClock:
    """Seconds Python's garbage collector has run in this process while started (``gc.callbacks``).

    A collection holds the GIL: every thread waits, the one launching a render's kernels too, so a job's log line
    says how much of its time went to collections (a worker keeps its start's objects out of them:
    ``jobs.worker.state.freeze_start_up_objects``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.oldest = 0  # collections of the oldest generation: the ones that walk every tracked object
        self._began: float | None = None

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        elif self._began is not None:
            self.seconds += time.perf_counter() - self._began
            self.oldest += info["generation"] == 2
            self._began = None

    def start(self) -> CollectionClock:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


class Laps:
    """Seconds between consecutive ``lap`` calls, each named for the stage it closes (a name given twice adds up),
    and, given the worker's ``collections`` clock, the garbage collections among them."""

    def __init__(self, collections: CollectionClock | None = None) -> None:
        self.started = self._last = time.monotonic()
        self.seconds: dict[str, float] = {}
        self._collections = collections
        self._collected_before = collections.seconds if collections is not None else 0.0

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now

    @property
    def total(self) -> float:
        return self._last - self.started

    @property
    def collecting(self) -> float:
        """Seconds of garbage collection since the first lap began (any thread's: they all waited)."""
        return 0.0 if self._collections is None else self._collections.seconds - self._collected_before

    def __str__(self) -> str:
        stages = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in self.seconds.items())
        return stages if self._collections is None else f"{stages}; garbage collections {self.collecting:.2f} s"
