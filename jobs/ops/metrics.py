"""Prometheus metrics: the endpoint both processes serve and the queue gauges (a worker's own: ``jobs.worker.monitor``).

Metric names (README "Operations"):

    headshot_queue_depth                       jobs waiting in the queue (read from Redis at each scrape)
    headshot_queue_in_progress                 jobs running on any worker (idem)
    headshot_live_workers                      workers whose heartbeat is fresh (idem)
    headshot_redis_up                          1 when the last scrape could read Redis
    headshot_jobs_started_total{kind}          kind: train | generate
    headshot_job_duration_seconds{kind,outcome}   outcome: ok | user_error | error | cancelled
    headshot_job_failures_total{kind,cause}    cause: user_input | internal
    headshot_worker_jobs_running               jobs this worker runs now (0 or 1)
    headshot_gpu_memory_allocated_bytes{device}, headshot_gpu_memory_reserved_bytes{device}
                                               torch's CUDA allocator; absent on a CPU worker

Every process keeps its own ``CollectorRegistry`` (no global one), so several workers can live in one test process.
This module never imports torch: the GPU collector only reads it once the worker has loaded it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobs.ops.health import live_workers, queue_counts

__all__ = ["MetricsServer", "QueueGauges"]

log = logging.getLogger(__name__)


class MetricsServer:
    """Serves ``registry`` at ``http://host:port/metrics``, after awaiting ``refresh`` so Redis gauges are fresh."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        refresh: Callable[[], Awaitable[None]] | None = None,
        *,
        owner: str,
    ) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._refresh = refresh
        self._owner = owner
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._refresh is not None:
            await self._refresh()
        return web.Response(body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)  # a scrape every 15 s is not worth a log line
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port).start()
        except OSError as error:
            await self._runner.cleanup()
            raise RuntimeError(
                f"{self._owner} metrics cannot listen on {self._host}:{self._port} ({error.strerror}): give each "
                f"process on a host its own port, or unset it to turn metrics off."
            ) from error
        log.info("%s metrics on http://%s:%d/metrics", self._owner, self._host, self._port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class QueueGauges:
    """Queue depth, running jobs and live workers, read from Redis when ``refresh`` is awaited (at each scrape)."""

    def __init__(self, registry: CollectorRegistry, redis: Redis, queue_name: str) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self.depth = Gauge("headshot_queue_depth", "Jobs waiting in the queue.", registry=registry)
        self.in_progress = Gauge("headshot_queue_in_progress", "Jobs running on any worker.", registry=registry)
        self.workers = Gauge("headshot_live_workers", "Workers with a fresh heartbeat.", registry=registry)
        self.redis_up = Gauge("headshot_redis_up", "1 when the last scrape could read Redis.", registry=registry)

    async def refresh(self) -> None:
        try:
            counts = await queue_counts(self._redis, self._queue_name)
            workers = await live_workers(self._redis, self._queue_name)
        except (RedisError, OSError):
            # Serve the rest of the metrics anyway: "Redis is down" is what the operator needs to see.
            log.warning("metrics could not read the queue from Redis", exc_info=True)
            self.redis_up.set(0)
            return
        self.depth.set(counts.queued)
        self.in_progress.set(counts.in_progress)
        self.workers.set(len(workers))
        self.redis_up.set(1)
