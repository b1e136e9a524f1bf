"""The arq queue on a real Redis: deterministic ids, positions, aborts."""

from __future__ import annotations

from redis.asyncio import Redis

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


async def test_unreachable_redis_fails_fast_naming_it() -> None:
    import pytest

    with pytest.raises(Exception, match="127.0.0.1"):
        await connect_queue("redis://127.0.0.1:1/0", "q")
