"""The event stream between workers and the bot: workers append (``EventPublisher``), the bot's consumer group reads.

At-least-once: the bot acks an event only after the chat call succeeded; events left pending by a bot that died are
read again by the same consumer name on restart and claimed by any other consumer once idle long enough. An entry
that is no event of this version (a field missing, an unknown type) is logged and acked, so it cannot block the rest.
An event whose delivery failed stays pending and is claimed again once idle ``claim_idle_ms``, each claim counted by
Redis (``deliveries``); past the bot's limit it moves to the dead-letter stream (``dead_letter``), and one the chat
refused for good is acked without a post (``discard``).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from jobs.contract.events import Event, event_from_fields

__all__ = ["BOT_GROUP", "EventConsumer", "EventPublisher", "dead_letter_stream"]

log = logging.getLogger(__name__)

BOT_GROUP = "bot"
DEAD_LETTER_MAX_LENGTH = 10_000


def dead_letter_stream(stream: str) -> str:
    """Where events go that failed delivery too often, kept for an operator: ``<stream>:dead``."""
    return f"{stream}:dead"


class EventPublisher:
    """Appends events to the stream; the stream is capped so a bot that is away for days cannot fill Redis."""

    def __init__(self, redis: Redis, stream: str, max_length: int = 100_000) -> None:
        self._redis = redis
        self._stream = stream
        self._max_length = max_length

    async def publish(self, event: Event) -> str:
        event_id = await self._redis.xadd(
            self._stream,
            event.to_fields(),  # type: ignore[arg-type]
            maxlen=self._max_length,
            approximate=True,
        )
        return _id(event_id)


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }


class EventConsumer:
    """Reads the stream as one named consumer of the bot's group: own pending first, then stale ones, then new."""

    def __init__(self, redis: Redis, stream: str, consumer: str, *, claim_idle_ms: int = 60_000) -> None:
        self._redis = redis
        self._stream = stream
        self._consumer = consumer
        self._claim_idle_ms = claim_idle_ms
        self._pending_from = "0"  # own pending entries are read once, in pages, after this id
        self._pending_done = False

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self._stream, BOT_GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, *, block_ms: int = 1000, count: int = 20) -> list[Event]:
        # 1. What this consumer read before a restart but never acked (a page at a time: some may still be in flight).
        if not self._pending_done:
            events, last = await self._read_group(self._pending_from, block_ms=None, count=count)
            if last is not None:
                self._pending_from = last
                return events
            self._pending_done = True
        # 2. What another bot instance left pending too long (it died mid-delivery).
        claimed = await self._redis.xautoclaim(
            self._stream, BOT_GROUP, self._consumer, min_idle_time=self._claim_idle_ms, start_id="0-0", count=count
        )
        stale = [event for event_id, raw in claimed[1] if raw and (event := await self._parse(event_id, raw))]
        if stale:
            return stale
        # 3. New events.
        events, _ = await self._read_group(">", block_ms=block_ms, count=count)
        return events

    async def ack(self, event: Event) -> None:
        if event.event_id is not None:
            await self._redis.xack(self._stream, BOT_GROUP, event.event_id)

    async def discard(self, event: Event) -> None:
        """Ack an event the chat refused for good: done with, though nothing was posted."""
        if event.event_id is not None:
            await self._redis.xack(self._stream, BOT_GROUP, event.event_id)

    async def deliveries(self, event: Event) -> int:
        """How often the group has handed this event out (the current read included); 0 once acked."""
        if event.event_id is None:
            return 0
        rows = await self._redis.xpending_range(
            self._stream, BOT_GROUP, min=event.event_id, max=event.event_id, count=1
        )
        return int(rows[0]["times_delivered"]) if rows else 0

    async def dead_letter(self, event: Event, error: str) -> None:
        """Move an event to the dead-letter stream, with the id it had and the error's name, and ack it: both or
        neither. ``error`` is a class name, never a message (a message may hold a URL with a token in it)."""
        if event.event_id is None:
            return
        fields = {**event.to_fields(), "event_id": event.event_id, "error": error}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(dead_letter_stream(self._stream), fields, maxlen=DEAD_LETTER_MAX_LENGTH, approximate=True)  # type: ignore[arg-type]
            pipe.xack(self._stream, BOT_GROUP, event.event_id)
            await pipe.execute()

    async def _read_group(self, start: str, *, block_ms: int | None, count: int) -> tuple[list[Event], str | None]:
        """The events read, and the last entry id read (None when there was no entry at all)."""
        response = await self._redis.xreadgroup(
            BOT_GROUP, self._consumer, {self._stream: start}, count=count, block=block_ms
        )
        events: list[Event] = []
        last: str | None = None
        for _stream, entries in response or []:
            for event_id, raw in entries:
                last = _id(event_id)
                if not raw:  # trimmed from the stream while pending: nothing left to deliver, so stop asking for it
                    await self._redis.xack(self._stream, BOT_GROUP, event_id)
                elif event := await self._parse(event_id, raw):
                    events.append(event)
        return events, last

    async def _parse(self, event_id: Any, raw: dict[Any, Any]) -> Event | None:
        try:
            return event_from_fields(_id(event_id), _decode(raw))
        except (KeyError, ValueError, TypeError):
            log.error("dropping stream entry %s: not an event this bot reads", _id(event_id), exc_info=True)
            await self._redis.xack(self._stream, BOT_GROUP, event_id)
            return None


def _id(event_id: Any) -> str:
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)
