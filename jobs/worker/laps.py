"""A job's seconds stage by stage, for the one log line that says where a job's time went."""

from __future__ import annotations

import time

__all__ = ["Laps"]


class Laps:
    """Seconds between consecutive ``lap`` calls, each named for the stage it closes (a name given twice adds up)."""

    def __init__(self) -> None:
        self.started = self._last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now

    @property
    def total(self) -> float:
        return self._last - self.started

    def __str__(self) -> str:
        return ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in self.seconds.items())
