"""A worker's own metrics (jobs started, durations by outcome, GPU memory), heartbeat and log tags.

The metric names are listed in ``jobs.ops.metrics``. This module never imports torch: the GPU collector only reads
it once the worker has loaded it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobs.logging_setup import bind_log_context
from jobs.ops.health import Heartbeat, clear_heartbeat, write_heartbeat
from jobs.ops.metrics import MetricsServer, QueueGauges
from jobs.settings import Settings
from pipeline.errors import UserInputError

__all__ = ["WorkerMonitor"]

log = logging.getLogger(__name__)

# Generation takes seconds to minutes, training minutes to an hour (train_timeout_s defaults to 3600).
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
# A render's section is seconds, a training's a minute or more.
GPU_WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

JobFunction = TypeVar("JobFunction", bound=Callable[..., Awaitable[Any]])


class _GpuMemoryCollector(Collector):
    """torch's CUDA allocator figures for the worker's device; yields nothing until CUDA is in use."""

    def __init__(self, device: str | None) -> None:
        self._device = device

    def collect(self) -> Iterator[Metric]:
        torch = sys.modules.get("torch")  # loaded with the model; never imported just to be scraped
        if torch is None or (self._device or "cuda").split(":")[0] != "cuda" or not torch.cuda.is_initialized():
            return
        device = torch.device(self._device or "cuda")
        index = device.index if device.index is not None else torch.cuda.current_device()
        allocated = GaugeMetricFamily(
            "headshot_gpu_memory_allocated_bytes", "CUDA memory held by tensors.", labels=["device"]
        )
        reserved = GaugeMetricFamily(
            "headshot_gpu_memory_reserved_bytes",
            "CUDA memory reserved by torch's caching allocator.",
            labels=["device"],
        )
        allocated.add_metric([str(index)], torch.cuda.memory_allocated(index))
        reserved.add_metric([str(index)], torch.cuda.memory_reserved(index))
        yield allocated
        yield reserved


def _outcome(error: BaseException) -> str:
    if isinstance(error, UserInputError):
        return "user_error"
    if isinstance(error, asyncio.CancelledError):  # /cancel, a timeout, or a worker shutting down
        return "cancelled"
    # The job already imported these (and torch with them); importing them here costs nothing.
    from pipeline.diffusion.generation import GenerationCancelled
    from pipeline.diffusion.training.loop import TrainingCancelled

    return "cancelled" if isinstance(error, TrainingCancelled | GenerationCancelled) else "error"


class WorkerMonitor:
    """One worker's metrics endpoint, heartbeat and log tags: ``start``/``stop`` from arq's startup/shutdown hooks,
    ``on_job_start`` as arq's hook, and each job function wrapped by ``instrument``."""

    def __init__(self, settings: Settings, worker_name: str) -> None:
        self.settings = settings
        self.worker_name = worker_name
        self.registry = CollectorRegistry()
        self.started = Counter("headshot_jobs_started", "Jobs this worker started.", ["kind"], registry=self.registry)
        self.duration = Histogram(
            "headshot_job_duration_seconds",
            "Time from a job's start to its end.",
            ["kind", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.failures = Counter("headshot_job_failures", "Jobs that failed.", ["kind", "cause"], registry=self.registry)
        self.withheld = Counter(
            "headshot_images_withheld", "Renders the image safety check withheld.", registry=self.registry
        )
        self.running = Gauge("headshot_worker_jobs_running", "Jobs this worker runs now.", registry=self.registry)
        # With HEADSHOT_WORKER_JOBS above one: how long torch sections wait for another job's (jobs/worker/gpu.py).
        self.gpu_wait = Histogram(
            "headshot_worker_gpu_wait_seconds",
            "Time a job's torch section waited for the GPU.",
            buckets=GPU_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_GpuMemoryCollector(settings.device))
        self._started_at = time.time()
        # What the loaded model offers (``WorkerFeature``), set once it is loaded; beats before that offer nothing.
        self.features: tuple[str, ...] = ()
        self._running_jobs: list[str] = []  # oldest first; the heartbeat names the oldest
        self._done = 0
        self._failed = 0
        self._server: MetricsServer | None = None
        self._beating: asyncio.Task[None] | None = None
        self._redis: Redis | None = None

    async def start(self, redis: Redis) -> None:
        self._redis = redis
        if self.settings.worker_metrics_port:
            gauges = QueueGauges(self.registry, redis, self.settings.queue_name)
            server = MetricsServer(
                self.registry,
                self.settings.metrics_host,
                self.settings.worker_metrics_port,
                gauges.refresh,
                owner=f"worker {self.worker_name}",
            )
            await server.start()
            self._server = server
        self._beating = asyncio.create_task(self._beat(redis), name="worker-heartbeat")

    async def stop(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)
            self._beating = None
        if self._redis is not None:
            try:
                await clear_heartbeat(self._redis, self.settings.queue_name, self.worker_name)
            except (RedisError, OSError):  # Redis is away: the key expires on its own
                log.warning("clearing the heartbeat of worker %s failed", self.worker_name, exc_info=True)
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def offer(self, features: tuple[str, ...]) -> None:
        """The loaded model's features, in a beat at once: a bot asks for previews only once it sees them."""
        self.features = features
        if self._redis is not None:
            try:
                await write_heartbeat(
                    self._redis, self.settings.queue_name, self.heartbeat(), self.settings.health_check_interval_s
                )
            except (RedisError, OSError):  # the next regular beat carries them
                log.warning("writing the heartbeat of worker %s failed", self.worker_name, exc_info=True)

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            self.worker_name,
            self._started_at,
            time.time(),
            self._running_jobs[0] if self._running_jobs else None,
            self._done,
            self._failed,
            list(self.features),
        )

    async def _beat(self, redis: Redis) -> None:
        interval = self.settings.health_check_interval_s
        while True:
            try:
                await write_heartbeat(redis, self.settings.queue_name, self.heartbeat(), interval)
            except (RedisError, OSError):
                log.warning("writing the heartbeat of worker %s failed; retrying", self.worker_name, exc_info=True)
            await asyncio.sleep(interval)

    async def on_job_start(self, ctx: dict[str, Any]) -> None:
        """arq's hook: tags arq's own lines about the job (its start, end and traceback) with the job id."""
        bind_log_context(job_id=ctx["job_id"])

    def instrument(self, kind: str, job: JobFunction) -> JobFunction:
        """``job`` counted, timed by outcome, and its log lines tagged with the job id and the user key."""

        @functools.wraps(job)
        async def run(ctx: dict[str, Any], payload: dict[str, Any]) -> Any:
            bind_log_context(job_id=ctx["job_id"], user_key=payload.get("user_key"))
            self.started.labels(kind).inc()
            self._running_jobs.append(ctx["job_id"])
            began = time.monotonic()
            outcome = "ok"
            try:
                with self.running.track_inprogress():
                    return await job(ctx, payload)
            except BaseException as error:
                outcome = _outcome(error)
                raise
            finally:
                self.duration.labels(kind, outcome).observe(time.monotonic() - began)
                self._running_jobs.remove(ctx["job_id"])
                if outcome in ("user_error", "error"):
                    self.failures.labels(kind, "user_input" if outcome == "user_error" else "internal").inc()
                    self._failed += 1
                elif outcome == "ok":
                    self._done += 1

        return cast(JobFunction, run)
