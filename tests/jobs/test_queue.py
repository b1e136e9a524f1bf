"""The arq queue on a real Redis: deterministic ids, positions, aborts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from arq.constants import in_progress_key_prefix
from arq.worker import Worker, func
from redis.asyncio import Redis

from jobs.contract.kinds import JobKind
from jobs.contract.payloads import TrainRequest, train_job_id
from jobs.contract.queue import JobQueue, connect_queue
from jobs.settings import Settings


async def test_same_job_id_enqueues_once_and_reports_position(settings: Settings, redis: Redis) -> None:
    assert settings.redis_url
    pool = await connect_queue(settings.redis_url, settings.queue_name)
    try:
        queue = JobQueue(pool, settings.queue_name)
        request = TrainRequest("local:ann", 1, ["users/local%3Aann/sessions/1/selfies/001.jpg"], "users/x/lora")
        first_id = train_job_id("local:ann", 1, 0)
        assert await queue.enqueue_training(first_id, request) is True
        assert await queue.enqueue_training(first_id, request) is False  # a double click
        other_id = train_job_id("local:bob", 7, 0)
        assert await queue.enqueue_training(other_id, request) is True
        assert await queue.depth() == 2
        assert await queue.position(first_id) == 1
        assert await queue.position(other_id) == 2
        assert await queue.position("train:nobody:0:0") is None
    finally:
        await pool.aclose()


async def test_a_running_job_has_no_position_and_the_jobs_behind_it_move_up(settings: Settings, redis: Redis) -> None:
    # arq keeps a running job in its queue until it ends: counted as queued, /delete left a running training
    # unaborted (its abort request was erased with the "queued" job's records) and /status showed it in line.
    assert settings.redis_url
    started, release = asyncio.Event(), asyncio.Event()

    async def train_lora(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    pool = await connect_queue(settings.redis_url, settings.queue_name)
    worker = Worker(
        [func(train_lora, name=JobKind.TRAIN.function)],
        redis_pool=pool,
        queue_name=settings.queue_name,
        max_jobs=1,
        poll_delay=0.05,
        handle_signals=False,
    )
    running = asyncio.create_task(worker.async_run())
    try:
        queue = JobQueue(pool, settings.queue_name)
        request = TrainRequest("local:ann", 1, ["users/local%3Aann/sessions/1/selfies/001.jpg"], "users/x/lora")
        first_id, second_id = train_job_id("local:ann", 1, 0), train_job_id("local:bob", 1, 0)
        await queue.enqueue_training(first_id, request)
        await asyncio.wait_for(started.wait(), 30)
        await queue.enqueue_training(second_id, request)
        deadline = time.monotonic() + 10
        while not await redis.exists(in_progress_key_prefix + first_id):  # arq writes it as it starts the job
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert await queue.depth() == 2  # arq's own count still holds the running job
        assert await queue.position(first_id) is None
        assert await queue.position(second_id) == 1
    finally:
        release.set()  # both jobs end, and the worker closes with nothing running
        deadline = time.monotonic() + 10
        while await queue.depth() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()


async def test_unreachable_redis_fails_fast_naming_it() -> None:
    import pytest

    with pytest.raises(Exception, match="127.0.0.1"):
        await connect_queue("redis://127.0.0.1:1/0", "q")
