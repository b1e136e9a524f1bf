"""The bot's Prometheus metrics: worker events delivered to chats, delivery backlog, and the queue gauges.

Served on ``settings.bot_metrics_port`` (off when unset or 0); names in README "Operations":

    headshot_bot_events_delivered_total{type}      events posted to a chat and acked, by event type
    headshot_bot_events_pending                    events read by the bot but not acked yet (read at each scrape)
    headshot_bot_jobs_undeliverable_total{platform} jobs ended because the chat refused for good (blocked bot, ...)
    headshot_bot_events_dead_lettered_total{type}  events moved to the dead-letter stream after their last try
    headshot_bot_dead_letters                      entries in the dead-letter stream (read at each scrape)
    headshot_queue_depth, headshot_queue_in_progress, headshot_live_workers, headshot_redis_up   (see jobs.ops.metrics)
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from jobs.contract.events import Event
from jobs.contract.stream import BOT_GROUP, EventConsumer, dead_letter_stream
from jobs.ops.metrics import MetricsServer, QueueGauges
from jobs.settings import Settings

__all__ = ["BotMetrics", "CountingConsumer"]

log = logging.getLogger(__name__)


class BotMetrics:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self._redis = redis
        self.registry = CollectorRegistry()
        self.queue = QueueGauges(self.registry, redis, settings.queue_name)
        self.delivered = Counter(
            "headshot_bot_events_delivered",
            "Worker events posted to a chat and acked.",
            ["type"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "headshot_bot_events_pending", "Events read by the bot, not acked yet.", registry=self.registry
        )
        self.undeliverable = Counter(
            "headshot_bot_jobs_undeliverable",
            "Jobs ended: the chat refused for good.",
            ["platform"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "headshot_bot_events_dead_lettered",
            "Events moved to the dead-letter stream.",
            ["type"],
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "headshot_bot_dead_letters", "Entries in the dead-letter stream.", registry=self.registry
        )
        self._server: MetricsServer | None = None

    async def start(self) -> None:
        """Serve ``/metrics`` when ``bot_metrics_port`` is set; otherwise count quietly."""
        if not self.settings.bot_metrics_port:
            return
        server = MetricsServer(
            self.registry, self.settings.metrics_host, self.settings.bot_metrics_port, self.refresh, owner="bot"
        )
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def refresh(self) -> None:
        await self.queue.refresh()
        try:
            summary = await self._redis.xpending(self.settings.events_stream, BOT_GROUP)
        except ResponseError:  # NOGROUP: delivery has not started yet, so nothing is pending
            self.pending.set(0)
        except (RedisError, OSError):
            return  # QueueGauges already set headshot_redis_up to 0 and logged why
        else:
            self.pending.set(int(summary["pending"]))
        try:
            self.dead_letters.set(int(await self._redis.xlen(dead_letter_stream(self.settings.events_stream))))
        except (RedisError, OSError):
            return

    def count_undeliverable(self, platform: str) -> None:
        self.undeliverable.labels(platform).inc()

    def count_dead_letter(self, event_type: str) -> None:
        self.dead_lettered.labels(event_type).inc()


class CountingConsumer(EventConsumer):
    """The bot's event consumer, counting each ack: an ack is a delivery that reached the chat."""

    def __init__(
        self, redis: Redis, stream: str, consumer: str, metrics: BotMetrics, *, claim_idle_ms: int = 60_000
    ) -> None:
        super().__init__(redis, stream, consumer, claim_idle_ms=claim_idle_ms)
        self._metrics = metrics

    async def ack(self, event: Event) -> None:
        await super().ack(event)
        self._metrics.delivered.labels(event.type.value).inc()
