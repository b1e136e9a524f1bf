"""Assembles the bot process from settings: store, storage, queue, core service and event delivery."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from types import TracebackType

from arq.connections import ArqRedis

from bot.core.context import CoreContext
from bot.core.delivery import EventDelivery
from bot.core.service import HeadshotService
from bot.core.types import ChatPort
from bot.core.watchdog import JobWatchdog
from bot.store import Store
from jobs.events import EventConsumer
from jobs.queue import JobQueue, connect_queue
from jobs.settings import Settings
from jobs.storage import BlobStorage, LocalStorage

__all__ = ["BotApp"]

log = logging.getLogger(__name__)


class BotApp:
    """``async with BotApp(settings, redis_url) as app:`` then ``app.service`` for messages and
    ``app.start_delivery(ports)`` to post worker events back into chats."""

    def __init__(self, settings: Settings, redis_url: str, *, consumer_name: str | None = None,
                 storage: BlobStorage | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.redis_url = redis_url
        # The consumer name survives restarts on one host, so a restarted bot re-reads what it had not acked.
        self.consumer_name = consumer_name or f"bot-{os.uname().nodename}"
        self._storage = storage
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> BotApp:
        self.store = await Store(self.settings.resolved_database_path).open()
        self.pool: ArqRedis = await connect_queue(self.redis_url, self.settings.queue_name)
        storage = self._storage or LocalStorage(self.settings.resolved_storage_dir)
        self.core = CoreContext(self.settings, self.store, storage, JobQueue(self.pool, self.settings.queue_name))
        self.service = HeadshotService(self.core)
        return self

    def start_delivery(self, ports: Mapping[str, ChatPort]) -> EventDelivery:
        delivery = EventDelivery(self.core, ports)
        consumer = EventConsumer(self.pool, self.settings.events_stream, self.consumer_name)
        self._tasks.append(asyncio.create_task(delivery.run(consumer, self._stop), name="event-delivery"))
        watchdog = JobWatchdog(self.core, delivery)
        self._tasks.append(asyncio.create_task(watchdog.run(self._stop), name="job-watchdog"))
        return delivery

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        await self.pool.aclose()
        await self.store.close()
