"""The arq worker: builds its ``WorkerState`` once at start-up, then runs ``train_lora`` and ``generate_headshots``.

The pipeline is imported lazily (in start-up and the jobs), so ``jobs`` stays importable without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arq import func
from arq.worker import Worker

from jobs.contract.kinds import JobKind
from jobs.settings import Settings
from jobs.storage import BlobStorage
from jobs.worker.model_setup import ServingModel
from jobs.worker.monitor import WorkerMonitor
from jobs.worker.render_job import generate_headshots
from jobs.worker.retention import retention_cron
from jobs.worker.state import WORKER_NAME, start_worker_state, worker_state
from jobs.worker.supervision import after_job_end, on_job_start, worker_redis_settings
from jobs.worker.train_job import train_lora

if TYPE_CHECKING:
    from pipeline.safety.image import ImageSafety
    from pipeline.selfies.faces import FaceAnalyzer

__all__ = ["WORKER_POLL_DELAY_S", "OverlappingWorker", "build_worker"]

# arq looks for the next job this often; its 0.5 s default leaves the GPU idle ~0.25 s per job on average, ~3 s per
# customer (11 jobs), for a Redis query every 0.1 s instead.
WORKER_POLL_DELAY_S = 0.1


class OverlappingWorker(Worker):
    """An arq worker that takes one job more than ``max_jobs`` while all of its running jobs rest (``GpuTurns.resting``:
    each has had its GPU section and asks for no other now): the next request renders while the last one's host work
    goes on. A job just taken has not rested yet, so no second job is taken only to wait behind it for the GPU, and
    an idle worker beside this one is never passed by.

    arq reads ``max_jobs`` before each job it starts (and sized its semaphore from the constructor's value plus one,
    which the extra job uses)."""

    @property
    def max_jobs(self) -> int:
        state = self.ctx.get("state") if isinstance(getattr(self, "ctx", None), dict) else None
        resting = state.gpu.resting if state is not None else 0
        return self._jobs + min(resting, 1)

    @max_jobs.setter
    def max_jobs(self, value: int) -> None:
        self._jobs = value


def build_worker(
    settings: Settings,
    redis_url: str,
    *,
    storage: BlobStorage | None = None,
    faces: FaceAnalyzer | None = None,
    model: ServingModel | None = None,
    image_safety: ImageSafety | None = None,
    **overrides: Any,
) -> Worker:
    """An arq worker for ``settings``: ``worker_jobs`` jobs at a time (one more while they rest, with
    ``worker_overlap``: ``OverlappingWorker``), taking the one GPU and model in turns, aborts allowed, per-job
    timeouts.

    ``storage``, ``faces``, ``model`` and ``image_safety`` are handed to ``start_worker_state`` (tests share them
    across workers); ``overrides`` go to arq's ``Worker`` (tests pass ``burst=True, poll_delay=0.05``).
    """
    monitor = WorkerMonitor(settings, WORKER_NAME)

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["state"] = await start_worker_state(
            ctx["redis"], settings, monitor, storage=storage, faces=faces, model=model, image_safety=image_safety
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "state" in ctx:  # absent when start-up itself failed
            await worker_state(ctx).close()

    async def on_each_job_start(ctx: dict[str, Any]) -> None:
        await on_job_start(ctx)  # short in-progress leases (jobs/worker/supervision.py)
        await monitor.on_job_start(ctx)

    train = monitor.instrument(JobKind.TRAIN, train_lora)
    generate = monitor.instrument(JobKind.GENERATE, generate_headshots)
    tries = settings.job_max_tries + 1  # one more than ours: announce_start ends a job with a reason, arq silently
    options: dict[str, Any] = {
        "functions": [
            func(train, name=JobKind.TRAIN.function, timeout=settings.train_timeout_s, max_tries=tries),
            func(generate, name=JobKind.GENERATE.function, timeout=settings.generate_timeout_s, max_tries=tries),
        ],
        "cron_jobs": [retention_cron()],
        "queue_name": settings.queue_name,
        "redis_settings": worker_redis_settings(redis_url),  # rides out a Redis restart
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "on_job_start": on_each_job_start,
        "after_job_end": after_job_end,
        "max_jobs": settings.worker_jobs,  # their torch sections take the GPU in turns (jobs/worker/gpu.py)
        "poll_delay": WORKER_POLL_DELAY_S,
        "allow_abort_jobs": True,
        "keep_result": 3600,
        "health_check_interval": settings.health_check_interval_s,
        "handle_signals": True,
    }
    options.update(overrides)
    worker = OverlappingWorker(**options) if settings.worker_overlap else Worker(**options)
    # The jobs tell a /cancel from a timeout or a shutdown by asking it (supervision.py). Into arq's own dict: arq
    # replaces an empty ``ctx`` with a new one.
    worker.ctx["worker"] = worker
    return worker
