"""A benchmark's results as they come: one JSON rewritten after every figure, timestamped progress lines, each
phase's wall time, and a time budget, so that a run cut short by its machine's command limit still reports."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import free_memory

__all__ = ["Journal"]


class Journal:
    """The results, rewritten to ``out`` after every figure; timestamped progress lines; each phase's wall time."""

    def __init__(self, out: Path | None, budget_s: float) -> None:
        self.out, self.budget_s, self.started = out, budget_s, time.monotonic()
        self.results: dict[str, Any] = {"phases": {}}
        self.failures = 0

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def record(self, path: tuple[Any, ...], value: Any) -> None:
        node = self.results
        for key in path[:-1]:
            node = node.setdefault(str(key), {})
        node[str(path[-1])] = value
        self.log(f"{'.'.join(map(str, path))} = {json.dumps(value, default=str)}")
        if self.out is not None:
            self.out.write_text(json.dumps(self.results, indent=2, default=str) + "\n")

    def attempt(self, path: tuple[Any, ...], measure: Callable[[], Any]) -> None:
        """Record ``measure()`` at ``path``, or the error it raised: one figure's failure costs no other."""
        try:
            value = measure()
        except Exception as error:
            self.failures += 1
            traceback.print_exc()
            value = {"error": f"{type(error).__name__}: {error}"[:800]}
        free_memory()
        self.record(path, value)

    def phase(self, name: str, body: Callable[[], None]) -> None:
        """Run ``body`` as phase ``name`` unless the budget is spent; record its status and wall time."""
        elapsed = time.monotonic() - self.started
        if elapsed > self.budget_s:
            self.record(("phases", name), {"status": "skipped", "reason": f"would start at {elapsed:.0f} s"})
            return
        self.log(f"phase {name}: start")
        started, failures = time.monotonic(), self.failures
        status = "ok"
        try:
            body()
        except Exception as error:
            status = f"failed: {type(error).__name__}: {error}"[:800]
            traceback.print_exc()
        free_memory()
        if status == "ok" and self.failures > failures:
            status = f"{self.failures - failures} figure(s) failed"
        self.record(("phases", name), {"status": status, "wall_s": round(time.monotonic() - started, 1)})
