"""Worker -> bot events on a Redis Stream, read by the bot's consumer group (at-least-once).

The bot acks an event only after the chat call succeeded; events left pending by a bot that died are read again
by the same consumer name on restart and claimed by any other consumer once idle long enough.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = ["Event", "EventConsumer", "EventPublisher", "EventType"]

BOT_GROUP = "bot"


class EventType(StrEnum):
    STARTED = "started"
    PROGRESS = "progress"
    TRAINED = "trained"
    IMAGES_READY = "images_ready"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # the retention cron job deleted old blobs of a user; ``data["keys"]`` lists them


@dataclass(frozen=True)
class Event:
    """One message from a worker about one job of one user. ``event_id`` is the stream id once published."""

    type: EventType
    user_key: str
    job_id: str
    data: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None

    def to_fields(self) -> dict[str, str]:
        return {
            "type": self.type.value,
            "user_key": self.user_key,
            "job_id": self.job_id,
            "data": json.dumps(self.data),
        }

    @classmethod
    def from_fields(cls, event_id: str, fields: dict[str, str]) -> Event:
        return cls(
            type=EventType(fields["type"]),
            user_key=fields["user_key"],
            job_id=fields["job_id"],
            data=json.loads(fields.get("data") or "{}"),
            event_id=event_id,
        )


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
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)


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
        self._pending_done = False

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self._stream, BOT_GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, *, block_ms: int = 1000, count: int = 20) -> list[Event]:
        # 1. What this consumer read before a restart but never acked.
        if not self._pending_done:
            events = await self._read_group("0", block_ms=None, count=count)
            if events:
                return events
            self._pending_done = True
        # 2. What another bot instance left pending too long (it died mid-delivery).
        claimed = await self._redis.xautoclaim(
            self._stream, BOT_GROUP, self._consumer, min_idle_time=self._claim_idle_ms, start_id="0-0", count=count
        )
        stale = [Event.from_fields(_id(event_id), _decode(raw)) for event_id, raw in claimed[1] if raw]
        if stale:
            return stale
        # 3. New events.
        return await self._read_group(">", block_ms=block_ms, count=count)

    async def ack(self, event: Event) -> None:
        if event.event_id is not None:
            await self._redis.xack(self._stream, BOT_GROUP, event.event_id)

    async def _read_group(self, start: str, *, block_ms: int | None, count: int) -> list[Event]:
        response = await self._redis.xreadgroup(
            BOT_GROUP, self._consumer, {self._stream: start}, count=count, block=block_ms
        )
        events: list[Event] = []
        for _stream, entries in response or []:
            for event_id, raw in entries:
                if raw:
                    events.append(Event.from_fields(_id(event_id), _decode(raw)))
                else:  # trimmed from the stream while pending: nothing left to deliver, so stop asking for it
                    await self._redis.xack(self._stream, BOT_GROUP, event_id)
        return events


def _id(event_id: Any) -> str:
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)
