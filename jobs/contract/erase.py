"""Erasing one user from Redis: their arq jobs (queued, results, retries, aborts) and their worker events (dead
letters included).

The bot calls this on ``/delete`` and again when a late event of an erased user arrives, so nothing that names the
user outlives them in Redis (a job still running when they left is aborted first; see ``spare``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from redis.asyncio import Redis

from jobs.contract.payloads import job_owner
from jobs.contract.stream import dead_letter_stream

__all__ = ["erase_finished_job", "erase_job", "erase_user_traces"]

_JOB_KEY_PREFIXES = (job_key_prefix, result_key_prefix, retry_key_prefix, in_progress_key_prefix)
_STREAM_PAGE = 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def erase_job(redis: Redis, job_id: str, *, queue_name: str, keep_abort: bool = False) -> None:
    """Every arq record of one job: its definition, queue entry, retry count, result and (unless kept) abort."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(*(prefix + job_id for prefix in _JOB_KEY_PREFIXES))
        pipe.zrem(queue_name, job_id)
        if not keep_abort:
            pipe.zrem(abort_jobs_ss, job_id)
        await pipe.execute()


async def erase_finished_job(redis: Redis, job_id: str, *, queue_name: str, wait_s: float = 10.0) -> None:
    """Erase a job that just sent its last event, once arq has recorded its end.

    A job's last event comes before arq writes its result (and drops its in-progress key, in the same transaction),
    so wait, briefly and bounded, for that key to go; otherwise the result would outlive the erasure.
    """
    deadline = asyncio.get_running_loop().time() + wait_s
    while await redis.exists(in_progress_key_prefix + job_id) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    await erase_job(redis, job_id, queue_name=queue_name)


async def erase_user_traces(
    redis: Redis, user_key: str, *, queue_name: str, events_stream: str, spare: Collection[str] = ()
) -> list[str]:
    """Erase the user's jobs and events; returns the ids of the stream entries deleted.

    ``spare`` names running jobs whose abort request must stay until a worker has seen it (the worker removes it).
    """
    # 1. Jobs: every arq key and sorted-set member whose job id belongs to the user.
    job_ids: set[str] = set()
    async for raw in redis.scan_iter(match="arq:*", count=1000):
        name = _text(raw)
        for prefix in _JOB_KEY_PREFIXES:
            if name.startswith(prefix) and job_owner(name[len(prefix) :]) == user_key:
                job_ids.add(name[len(prefix) :])
    for zset in (queue_name, abort_jobs_ss):
        job_ids.update(m for m in map(_text, await redis.zrange(zset, 0, -1)) if job_owner(m) == user_key)
    for job_id in job_ids:
        await erase_job(redis, job_id, queue_name=queue_name, keep_abort=job_id in spare)

    # 2. Events: the entries that name the user, in the stream and in its dead letters.
    deleted = await _erase_entries(redis, events_stream, user_key)
    await _erase_entries(redis, dead_letter_stream(events_stream), user_key)
    return deleted


async def _erase_entries(redis: Redis, stream: str, user_key: str) -> list[str]:
    """Delete the stream's entries that name the user (a page at a time; streams are capped); returns their ids."""
    deleted: list[str] = []
    start = "-"
    while True:
        page = await redis.xrange(stream, min=start, max="+", count=_STREAM_PAGE)
        ids = [
            _text(entry_id)
            for entry_id, fields in page
            if _text(fields.get(b"user_key", fields.get("user_key", ""))) == user_key
        ]
        if ids:
            await redis.xdel(stream, *ids)
            deleted.extend(ids)
        if len(page) < _STREAM_PAGE:
            return deleted
        start = "(" + _text(page[-1][0])
