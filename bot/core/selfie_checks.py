"""Selfie checks off the bot's event loop, in processes of their own.

dlib's face search and descriptor (a fraction of a second of CPU a photo) hold the GIL for stretches: run in threads
of the bot process they stalled its event loop, so a burst of uploads slowed every other user's replies (BENCHMARKS.md,
load run). In a process pool the bot's loop keeps its own interpreter; uploads queue for the pool, commands do not.
Each process checks one photo at a time (dlib's models are not shared across threads), so throughput grows with the
processes: one per core but one by default. ``processes=0`` keeps the checks in a thread.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from pipeline.selfies.faces import FaceAnalyzer
from pipeline.selfies.intake import AcceptedSelfie, IntakeRules, SelfieFacts, inspect_selfie

__all__ = ["SelfieChecks"]

_analyzer: FaceAnalyzer | None = None  # one per pool process, its models loaded as the process starts
_pools: dict[int, ProcessPoolExecutor] = {}  # one pool per size for the whole bot process (tests start many bots)
_pools_lock = threading.Lock()


def _start_process() -> None:
    global _analyzer
    _analyzer = FaceAnalyzer().load()


def _inspect_in_process(
    data: bytes, accepted: Sequence[SelfieFacts], rules: IntakeRules, min_side: int
) -> AcceptedSelfie:
    if _analyzer is None:
        raise RuntimeError("selfie check process started without its face models")
    return inspect_selfie(data, _analyzer, accepted, rules, min_side=min_side)


def _pool(processes: int) -> ProcessPoolExecutor:
    with _pools_lock:
        if processes not in _pools:
            # spawn, not fork: the bot process has threads (aiosqlite, the HTTP clients) a fork would copy mid-use.
            context = multiprocessing.get_context("spawn")
            _pools[processes] = ProcessPoolExecutor(processes, mp_context=context, initializer=_start_process)
        return _pools[processes]


class SelfieChecks:
    """``inspect`` one upload: decode, normalise and check its face against the session's accepted selfies."""

    def __init__(self, processes: int | None = None) -> None:
        """``processes`` None: one per core but one, which the event loop (and a worker on the same box) keeps."""
        if processes is None:
            processes = max(1, (os.cpu_count() or 2) - 1)
        if processes < 0:
            raise ValueError(f"selfie check processes must be 0 (threads) or more, got {processes}")
        self.processes = processes
        self._faces = FaceAnalyzer() if processes == 0 else None

    async def inspect(
        self, data: bytes, accepted: Sequence[SelfieFacts], rules: IntakeRules, *, min_side: int
    ) -> AcceptedSelfie:
        """The checked selfie, or ``SelfieRejected`` saying why not (raised here, from whichever process)."""
        if self._faces is not None:
            return await asyncio.to_thread(inspect_selfie, data, self._faces, accepted, rules, min_side=min_side)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            _pool(self.processes), _inspect_in_process, data, tuple(accepted), rules, min_side
        )
