"""When the bot last heard of each open job, for the watchdog; kept in memory, so a restart starts every bound anew."""

from __future__ import annotations

import time

__all__ = ["Heartbeats"]


class Heartbeats:
    """When the bot last heard of each open job (an event, a check); jobs not yet seen have no entry."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def heard(self, job_id: str) -> None:
        self._last[job_id] = time.monotonic()

    def silent_for(self, job_id: str) -> float | None:
        last = self._last.get(job_id)
        return None if last is None else time.monotonic() - last

    def forget(self, keep: set[str]) -> None:
        for job_id in set(self._last) - keep:
            del self._last[job_id]
