"""Assembles the bot process from settings: store, storage, queue, core service and event delivery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import TracebackType

from arq.connections import ArqRedis

from bot.core.context import CoreContext
from bot.core.delivery import EventDelivery
from bot.core.service import HeadshotService
from bot.core.types import ChatPort
from bot.core.watchdog import JobWatchdog
from bot.metrics import BotMetrics, CountingConsumer
from bot.store.database import Store
from jobs.contract.queue import JobQueue, connect_queue
from jobs.settings import Settings
from jobs.storage import BlobStorage, open_storage

__all__ = ["BotApp"]

log = logging.getLogger(__name__)


class BotApp:
    """``async with BotApp(settings, redis_url) as app:`` then ``app.service`` for messages and
    ``app.start_delivery(ports)`` to post worker events back into chats; ``stop_delivery`` (also on exit) lets the
    deliveries in flight finish while the chat clients are still open."""

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        *,
        consumer_name: str | None = None,
        storage: BlobStorage | None = None,
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.consumer_name = consumer_name or self.settings.bot_consumer
        self._storage = storage
        self._owned_storage: BlobStorage | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> BotApp:
        # Storage first: a wrong S3 setting fails the start with its own message, before anything else is open.
        storage = self._storage
        if storage is None:
            storage = self._owned_storage = await open_storage(self.settings)
        self.store = await Store(self.settings.resolved_database_path).open()
        self.pool: ArqRedis = await connect_queue(self.redis_url, self.settings.queue_name)
        self.core = CoreContext(self.settings, self.store, storage, JobQueue(self.pool, self.settings.queue_name))
        self.service = HeadshotService(self.core)
        self.metrics = BotMetrics(self.settings, self.pool)
        await self.metrics.start()  # serves /metrics when bot_metrics_port is set
        return self

    def start_delivery(self, ports: Mapping[str, ChatPort]) -> EventDelivery:
        delivery = EventDelivery(self.core, ports, metrics=self.metrics)
        retry_ms = int(self.settings.delivery_retry_s * 1000)
        consumer = CountingConsumer(
            self.pool, self.settings.events_stream, self.consumer_name, self.metrics, claim_idle_ms=retry_ms
        )
        self._tasks.append(asyncio.create_task(delivery.run(consumer, self._stop), name="event-delivery"))
        watchdog = JobWatchdog(self.core, delivery)
        self._tasks.append(asyncio.create_task(watchdog.run(self._stop), name="job-watchdog"))
        return delivery

    async def stop_delivery(self) -> None:
        """Stop reading events; the deliveries and the watchdog round in flight finish (5 s at most each)."""
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        self._tasks.clear()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_delivery()
        await self.metrics.stop()
        await self.pool.aclose()
        await self.store.close()
        if self._owned_storage is not None:
            await self._owned_storage.aclose()
            self._owned_storage = None
