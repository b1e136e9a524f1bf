"""Finding the faces in a worker's renders, every image of a request at once, in processes of their own.

dlib's face search and descriptor take most of a CPU second for one headshot-sized render (BENCHMARKS.md) and hold
the GIL for stretches, and one ``FaceAnalyzer`` serves one image at a time: a request's six candidates were searched
one after another for the likeness ranking, then the four kept were searched again for the face pass, while the GPU
waited. A pool of processes, each with its own models, searches all of a request's images at once, and the faces
found for the ranking are handed on to the face pass. The same code on the same pixels: the same faces. A render's
face is large, so each image is searched for large faces first (``FaceAnalyzer.faces(large_first=True)``), upsampled
only where no clear face is found.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

    from pipeline.selfies.faces import Face, FaceAnalyzer

__all__ = ["FaceSearch", "default_processes"]

_analyzer: FaceAnalyzer | None = None  # one per pool process, its models loaded as the process starts


def _start_process() -> None:
    from pipeline.selfies.faces import FaceAnalyzer

    global _analyzer
    _analyzer = FaceAnalyzer().load()


def _faces_in_process(image: Image.Image, large_first: bool) -> list[Face]:
    if _analyzer is None:
        raise RuntimeError("face search process started without its face models")
    return _analyzer.faces(image, large_first=large_first)


def _loaded() -> bool:
    return _analyzer is not None


def default_processes(images_per_request: int) -> int:
    """One process per image a request renders, at most one per CPU core but one (the worker's own), at least one."""
    return max(1, min(images_per_request, (os.cpu_count() or 2) - 1))


class FaceSearch:
    """``faces`` of many images at once: in ``processes`` processes, or (0) one at a time in a thread with
    ``analyzer``, the worker's own (tests hand in a shared one). ``large_first`` (a render's search) as
    ``FaceAnalyzer.faces`` takes it."""

    def __init__(self, analyzer: FaceAnalyzer, processes: int, *, large_first: bool = True) -> None:
        if processes < 0:
            raise ValueError(f"face search processes must be 0 (a thread) or more, got {processes}")
        self.analyzer = analyzer
        self.processes = processes
        self.large_first = large_first
        self._pool: ProcessPoolExecutor | None = None

    async def start(self) -> None:
        """Start the processes and load their models now (a second or two), so no request waits for it."""
        if self.processes:
            loop = asyncio.get_running_loop()
            pool = self._executor()
            await asyncio.gather(*(loop.run_in_executor(pool, _loaded) for _ in range(self.processes)))

    async def faces(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """The faces in each of ``images`` (``FaceAnalyzer.faces``: most confident first), in their order."""
        if not images:
            return []
        if not self.processes:
            return await asyncio.to_thread(
                lambda: [self.analyzer.faces(image, large_first=self.large_first) for image in images]
            )
        loop = asyncio.get_running_loop()
        pool = self._executor()
        searches = (loop.run_in_executor(pool, _faces_in_process, image, self.large_first) for image in images)
        return list(await asyncio.gather(*searches))

    def close(self) -> None:
        """End the processes (a search still running in them is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the worker has threads (torch's, the event loop's pools) a fork would copy mid-use,
            # and a spawned process imports only this module and the face models, never torch.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.processes, mp_context=context, initializer=_start_process)
        return self._pool
