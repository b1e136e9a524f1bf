"""What an operator asks Redis: which workers are alive, what the queue holds, what failed lately, what the bot
could not deliver.

arq's own health-check key (``<queue>:health-check``) is one per queue, overwritten by every worker on it, so it
cannot count workers. Each worker therefore also writes a heartbeat key of its own, ``<queue>:worker:<name>``, that
expires after a few missed beats: the keys present are the workers alive.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import DeserializationError, deserialize_job
from redis.asyncio import Redis

from jobs.contract.events import EventType, Failed, event_from_fields
from jobs.contract.stream import dead_letter_stream

__all__ = [
    "HEARTBEAT_MISSES",
    "DeadLetter",
    "Failure",
    "Heartbeat",
    "WorkerFeature",
    "QueueCounts",
    "QueuedJob",
    "age_s",
    "clear_heartbeat",
    "dead_letters",
    "live_workers",
    "offered",
    "queue_counts",
    "queue_jobs",
    "recent_failures",
    "write_heartbeat",
]

# A worker that missed this many beats in a row is counted gone (its key expires).
HEARTBEAT_MISSES = 3


class WorkerFeature(StrEnum):
    """What a worker's model can do beyond training and rendering from a LoRA; the bot asks before it offers it."""

    REFERENCES = "references"  # render a person from their selfies, no LoRA (FLUX.2 [klein]): the preview


@dataclass(frozen=True)
class Heartbeat:
    """One worker's latest beat; times are Unix seconds. ``features`` are known once its model is loaded."""

    worker: str
    started_at: float
    beat_at: float
    job_id: str | None = None
    jobs_done: int = 0
    jobs_failed: int = 0
    features: list[str] = field(default_factory=list)


def _heartbeat_prefix(queue_name: str) -> str:
    return f"{queue_name}:worker:"


async def write_heartbeat(redis: Redis, queue_name: str, beat: Heartbeat, interval_s: float) -> None:
    key = _heartbeat_prefix(queue_name) + beat.worker
    await redis.set(key, json.dumps(asdict(beat)), px=int(interval_s * HEARTBEAT_MISSES * 1000))


async def clear_heartbeat(redis: Redis, queue_name: str, worker: str) -> None:
    """A worker that stops cleanly stops counting at once, not a few intervals later."""
    await redis.delete(_heartbeat_prefix(queue_name) + worker)


async def offered(redis: Redis, queue_name: str, feature: WorkerFeature) -> bool:
    """Whether a live worker on the queue offers ``feature`` (every worker on one queue serves one model)."""
    return any(feature in beat.features for beat in await live_workers(redis, queue_name))


async def live_workers(redis: Redis, queue_name: str) -> list[Heartbeat]:
    keys = [key async for key in redis.scan_iter(match=_heartbeat_prefix(queue_name) + "*", count=500)]
    values = await redis.mget(keys) if keys else []
    beats = []
    for value in values:
        if value is None:  # expired between SCAN and MGET
            continue
        try:
            beats.append(Heartbeat(**json.loads(value)))
        except (TypeError, ValueError):  # a key of another version; not ours to judge
            continue
    return sorted(beats, key=lambda beat: beat.worker)


@dataclass(frozen=True)
class QueueCounts:
    queued: int
    in_progress: int


async def _in_progress_flags(redis: Redis, job_ids: list[str]) -> list[bool]:
    # arq keeps a running job in the queue's sorted set until it ends, marked by an in-progress key.
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(in_progress_key_prefix + job_id)
        return [bool(flag) for flag in await pipe.execute()]


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def queue_counts(redis: Redis, queue_name: str) -> QueueCounts:
    """Jobs waiting and jobs running, across every worker on the queue."""
    job_ids = [_decode(member) for member in await redis.zrange(queue_name, 0, -1)]
    running = sum(await _in_progress_flags(redis, job_ids)) if job_ids else 0
    return QueueCounts(queued=len(job_ids) - running, in_progress=running)


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    function: str | None
    user_key: str | None
    enqueued_at: float | None
    in_progress: bool


async def queue_jobs(redis: Redis, queue_name: str, limit: int = 20) -> list[QueuedJob]:
    """The first ``limit`` jobs of the queue, running ones included, oldest first."""
    job_ids = [_decode(member) for member in await redis.zrange(queue_name, 0, limit - 1)]
    if not job_ids:
        return []
    flags = await _in_progress_flags(redis, job_ids)
    definitions = await redis.mget([job_key_prefix + job_id for job_id in job_ids])
    jobs = []
    for job_id, running, raw in zip(job_ids, flags, definitions, strict=True):
        function = user_key = enqueued_at = None
        if raw is not None:
            try:
                definition = deserialize_job(raw)
            except DeserializationError:
                definition = None
            if definition is not None:
                function = definition.function
                enqueued_at = definition.enqueue_time.timestamp()
                payload = definition.args[0] if definition.args else None
                user_key = payload.get("user_key") if isinstance(payload, dict) else None
        jobs.append(QueuedJob(job_id, function, user_key, enqueued_at, running))
    return jobs


@dataclass(frozen=True)
class Failure:
    at: float
    job_id: str
    user_key: str
    kind: str
    reason: str


async def recent_failures(redis: Redis, stream: str, limit: int = 5, scan: int = 1000) -> list[Failure]:
    """The last ``limit`` ``failed`` events among the stream's newest ``scan``, newest first."""
    failures = []
    for event_id, raw in await redis.xrevrange(stream, count=scan):
        fields = {_decode(k): _decode(v) for k, v in raw.items()}
        if fields.get("type") != EventType.FAILED.value:
            continue
        try:
            event = event_from_fields(_decode(event_id), fields)
        except (KeyError, ValueError, TypeError):
            continue  # not an event of this version: nothing to report about it
        assert isinstance(event, Failed)
        at = int(_decode(event_id).split("-", 1)[0]) / 1000  # a stream id starts with its Unix time in ms
        failures.append(Failure(at, event.job_id, event.user_key, event.kind, event.reason))
        if len(failures) >= limit:
            break
    return failures


@dataclass(frozen=True)
class DeadLetter:
    """An event the bot gave up posting after its tries (the chat platform kept failing), as the dead-letter stream
    keeps it."""

    at: float
    event_type: str
    job_id: str
    user_key: str
    error: str


async def dead_letters(redis: Redis, stream: str, limit: int = 5) -> tuple[int, list[DeadLetter]]:
    """How many events the events stream's dead-letter stream holds, and its newest ``limit``, newest first."""
    dead = dead_letter_stream(stream)
    total = int(await redis.xlen(dead))
    letters = []
    for entry_id, raw in await redis.xrevrange(dead, count=limit) if limit else []:
        fields = {_decode(k): _decode(v) for k, v in raw.items()}
        at = int(_decode(entry_id).split("-", 1)[0]) / 1000
        letters.append(
            DeadLetter(
                at,
                fields.get("type", "?"),
                fields.get("job_id", "?"),
                fields.get("user_key", "?"),
                fields.get("error", "?"),
            )
        )
    return total, letters


def age_s(timestamp: float | None, now: float | None = None) -> float | None:
    return None if timestamp is None else max(0.0, (now or time.time()) - timestamp)
