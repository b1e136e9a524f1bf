"""The retention cron job on real files (ages set with os.utime) and a real Redis stream."""

from __future__ import annotations

import os
import time
from pathlib import Path

from redis.asyncio import Redis

from jobs.contract.events import EventType, Expired
from jobs.contract.stream import EventConsumer, EventPublisher
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.worker.app import build_worker
from jobs.worker.retention import expire_old_blobs

DAY = 86_400


async def _put(storage: LocalStorage, key: str, age_days: float) -> Path:
    await storage.put(key, key.encode())
    path = storage.local_path(key)
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path


async def test_old_blobs_go_fresh_ones_stay_and_each_user_gets_one_event(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    old = [
        await _put(storage, "users/local%3Aann/sessions/1/lora/pytorch_lora_weights.safetensors", 31),
        await _put(storage, "users/local%3Aann/outputs/1-1/00-seed7.png", 40),
        await _put(storage, "users/telegram%3A42/sessions/3/selfies/001.jpg", 100),  # a session never trained
    ]
    fresh = [
        await _put(storage, "users/local%3Aann/outputs/1-2/00-seed8.png", 29),
        await _put(storage, "users/local%3Abob/sessions/2/lora/pytorch_lora_weights.safetensors", 1),
    ]
    events = EventPublisher(redis, settings.events_stream)

    assert settings.retention_days == 30
    assert await expire_old_blobs(settings, storage, events) == {"expired": 3, "users": 2}
    assert not any(path.exists() for path in old)
    assert all(path.exists() for path in fresh)

    consumer = EventConsumer(redis, settings.events_stream, "test")
    await consumer.ensure_group()
    expired = await consumer.read(block_ms=100)
    assert {event.user_key: event.type for event in expired} == {
        "local:ann": EventType.EXPIRED,
        "telegram:42": EventType.EXPIRED,
    }
    ann = next(event for event in expired if event.user_key == "local:ann")
    assert isinstance(ann, Expired)
    assert sorted(ann.keys) == sorted(p.relative_to(storage.root).as_posix() for p in old[:2])
    assert ann.days == 30


async def test_retention_off_keeps_everything(settings: Settings, redis: Redis, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    path = await _put(storage, "users/local%3Aann/outputs/1-1/00-seed7.png", 4000)
    keep = settings.model_copy(update={"retention_days": 0})
    events = EventPublisher(redis, keep.events_stream)
    assert await expire_old_blobs(keep, storage, events) == {"expired": 0, "users": 0}
    assert path.exists() and await redis.xlen(keep.events_stream) == 0


def test_the_worker_runs_retention_daily(settings: Settings, redis_url: str) -> None:
    worker = build_worker(settings, redis_url, burst=True)
    [job] = worker.cron_jobs or []
    assert job.name == "expire_blobs" and job.unique and not job.run_at_startup
    assert (job.hour, job.minute) == ({3}, {17})
