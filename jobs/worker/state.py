"""What a worker holds for its life, built once at start: settings, storage, faces, the event stream and the model.

``start_worker_state`` is the one place it is put together. Tests hand in what they share across workers (a
prepared tiny model, a storage, loaded face models) as its explicit parameters; everything else is what production
builds, so a test worker renders through the same LoRA slot as a real one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from jobs.contract.stream import EventPublisher
from jobs.settings import Settings
from jobs.storage import BlobStorage, open_storage
from jobs.worker.compile_share import prepare_model_sharing
from jobs.worker.face_search import FaceSearch, default_processes
from jobs.worker.gpu import GpuTurns
from jobs.worker.laps import CollectionClock
from jobs.worker.model_setup import ServingModel, model_features
from jobs.worker.monitor import WorkerMonitor

if TYPE_CHECKING:
    from pipeline.safety.image import ImageSafety
    from pipeline.selfies.faces import FaceAnalyzer

__all__ = ["WORKER_NAME", "WorkerState", "freeze_start_up_objects", "start_worker_state", "worker_state"]

log = logging.getLogger(__name__)

# Named in every ``started`` event, so operators (and the scale-out benchmark) see which worker ran a job.
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class WorkerState:
    settings: Settings
    monitor: WorkerMonitor
    events: EventPublisher
    storage: BlobStorage
    faces: FaceAnalyzer
    model: ServingModel
    gpu: GpuTurns  # every torch section of every job runs through it
    face_search: FaceSearch  # the faces in renders (ranking, face pass), every image of a request at once
    image_safety: ImageSafety | None = None  # None: HEADSHOT_IMAGE_SAFETY=off, renders are posted unchecked
    owns_storage: bool = False
    collections: CollectionClock = field(default_factory=lambda: CollectionClock().start())  # jobs' log lines

    async def close(self) -> None:
        """Stop the metrics endpoint and heartbeat; close the storage this state opened (an S3 client's pool)."""
        await self.monitor.stop()
        self.collections.stop()
        self.gpu.close()
        self.face_search.close()
        if self.owns_storage:
            await self.storage.aclose()


async def start_worker_state(
    redis: Redis,
    settings: Settings,
    monitor: WorkerMonitor,
    *,
    storage: BlobStorage | None = None,
    faces: FaceAnalyzer | None = None,
    model: ServingModel | None = None,
    image_safety: ImageSafety | None = None,
) -> WorkerState:
    """Open storage, load the image safety check (as the settings ask), the face models and the diffusion model (each
    unless handed in), start the monitor."""
    from pipeline.safety.image import ImageSafety
    from pipeline.selfies.faces import FaceAnalyzer

    began = time.monotonic()
    if image_safety is None and settings.image_safety:
        # First: a worker that cannot check its renders stops before minutes of model loading (ModelLoadError names
        # the switch), rather than post them unchecked.
        image_safety = await asyncio.to_thread(ImageSafety.load)
    if image_safety is not None:
        labels = ", ".join(sorted(image_safety.labels))
        log.info("image safety check on: renders with %s at %.2f or more are withheld", labels, image_safety.min_score)
    else:
        log.warning("HEADSHOT_IMAGE_SAFETY is off: rendered images are stored and posted unchecked")
    owns_storage = storage is None
    if storage is None:
        storage = await open_storage(settings)
    if faces is None:  # scores each render's likeness; loaded now so no job waits for it
        faces = await asyncio.to_thread(FaceAnalyzer().load)
    processes = settings.face_search_processes
    if processes is None:
        processes = default_processes(math.ceil(settings.headshots_per_request * settings.headshot_candidates))
    face_search = FaceSearch(faces, processes)
    await face_search.start()
    log.info("faces in renders searched %s", f"in {processes} processes" if processes else "in a thread")
    await monitor.start(redis)  # metrics endpoint and heartbeat, before the model takes minutes
    if model is None:
        # Another host's kernels first, so this start's compiles are cache hits; then this start's, for the next.
        model = await prepare_model_sharing(storage, settings)
        freeze_start_up_objects()  # this process made the model: its objects live as long as the process
    await monitor.offer(model_features(model))
    events = EventPublisher(redis, settings.events_stream)
    gpu = GpuTurns(monitor.gpu_wait.observe)
    # The start's last line: from here arq polls the queue. "ready to serve" (the model's) comes before the collection
    # above, which a job enqueued at that line waited for (0.5 s on an H100, BENCHMARKS.md 2026-12-06 twenty-second
    # session); ``bench.scaleout`` enqueues after this one.
    log.info("taking jobs %.1f s after the worker's start began", time.monotonic() - began)
    return WorkerState(settings, monitor, events, storage, faces, model, gpu, face_search, image_safety, owns_storage)


def freeze_start_up_objects() -> tuple[int, float]:
    """Collect garbage once, then keep every object alive now out of all later garbage collections; return how many
    objects that was and the seconds the collection took.

    A worker's start leaves a million or more objects behind for the life of the process (the pipeline's modules, the
    compiled graphs with their guards and generated code), and a collection of the oldest generation walks every one
    of them: that collection stops the thread that runs into it for as long (BENCHMARKS.md, 2026-12-04 sixth
    session), and a render's host stalls while it runs. Frozen, they are no longer walked; what jobs make after the
    start (a user's LoRA, their images) is collected as before. The collection first, so the start's garbage is not
    kept; an object of the start that turns into cyclic garbage later is not freed, and none is meant to."""
    started = time.perf_counter()
    gc.collect()
    seconds = time.perf_counter() - started
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%d objects of the start kept out of garbage collections (a full collection took %.2f s)", frozen, seconds)
    return frozen, seconds


def worker_state(ctx: dict[str, Any]) -> WorkerState:
    """The state ``on_startup`` put into arq's ``ctx``."""
    state = ctx["state"]
    assert isinstance(state, WorkerState)
    return state
