"""Retention, the worker's half: a daily arq cron job deletes blobs older than ``retention_days``.

It works on storage alone (a blob's age is its last-modified time), then sends the bot one ``expired`` event per
user listing the keys that went, so the bot's rows follow and the user is told. Selfies normally go as soon as
training succeeds (``delete_selfies_after_training``); this also catches selfies of sessions never trained.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote

from arq.cron import CronJob, cron

from jobs.contract.events import Expired
from jobs.contract.stream import EventPublisher
from jobs.settings import Settings
from jobs.worker.state import worker_state

__all__ = ["ListableStorage", "expire_blobs", "expire_old_blobs", "retention_cron"]

log = logging.getLogger(__name__)

USERS_PREFIX = "users/"
RETENTION_JOB_ID = "retention"


@runtime_checkable
class ListableStorage(Protocol):
    """Storage that can list its blobs with their ages (local folder; an S3 bucket via ListObjectsV2)."""

    async def list_blobs(self, prefix: str) -> list[tuple[str, float]]: ...

    async def delete(self, key: str) -> bool: ...


async def expire_blobs(ctx: dict[str, Any]) -> dict[str, int]:
    """arq's cron job: ``expire_old_blobs`` with the worker's settings, storage and event stream."""
    state = worker_state(ctx)
    return await expire_old_blobs(state.settings, state.storage, state.events)


async def expire_old_blobs(settings: Settings, storage: object, events: EventPublisher) -> dict[str, int]:
    """Delete every user blob older than ``retention_days`` and tell the bot, one event per user."""
    if settings.retention_days <= 0:
        return {"expired": 0, "users": 0}
    if not isinstance(storage, ListableStorage):
        log.error("retention skipped: %s cannot list its blobs", type(storage).__name__)
        return {"expired": 0, "users": 0}

    # 1. Delete what is old, grouped by the user folder it sat in (users/<quoted user key>/...).
    cutoff = time.time() - settings.retention_days * 86_400
    expired: dict[str, list[str]] = {}
    for key, modified in await storage.list_blobs(USERS_PREFIX):
        if modified < cutoff and await storage.delete(key):
            expired.setdefault(unquote(key.split("/")[1]), []).append(key)

    # 2. One event per user; the bot forgets the rows and tells the user.
    for user_key, keys in expired.items():
        expiry = Expired(user_key=user_key, job_id=RETENTION_JOB_ID, keys=tuple(keys), days=settings.retention_days)
        await events.publish(expiry)
    count = sum(len(keys) for keys in expired.values())
    log.info("retention: deleted %d blobs older than %d days of %d users", count, settings.retention_days, len(expired))
    return {"expired": count, "users": len(expired)}


def retention_cron() -> CronJob:
    """Once a day at 03:17 (a quiet hour); ``unique`` so one worker of many runs it."""
    return cron(expire_blobs, name="expire_blobs", hour={3}, minute={17}, unique=True, timeout=3600)
