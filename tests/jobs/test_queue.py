"""The arq queue on a real Redis: deterministic ids, positions, aborts, requests ahead of recent trainings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.jobs import JobStatus
from arq.worker import Worker, func
from redis.asyncio import Redis

from jobs.contract.keys import lora_key, output_prefix, selfie_key
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import GenerateRequest, TrainRequest, generate_job_id, train_job_id
from jobs.contract.queue import JobQueue, connect_queue
from jobs.settings import Settings
from pipeline.styles import resolve_style

# Ann's training request; its contents do not matter to the queue, only the job ids it is enqueued under.
TRAINING = TrainRequest("local:ann", 1, [selfie_key("local:ann", 1, 1)], lora_key("local:ann", 1))


def _one_job_worker(pool: ArqRedis, queue_name: str, **functions: Callable[..., Any]) -> Worker:
    """A real arq worker on ``pool`` running one job at a time, as a GPU worker does, with stand-in job functions.

    In burst mode (arq's own tests' way): it returns once the queue is empty, so a test starts it with a job queued
    and awaits it, never cancels it; a cancel could cut short the task of a poll that had just begun (seen once in
    CI, as a ``CancelledError`` out of ``Worker.close``)."""
    names = {"train_lora": JobKind.TRAIN.function, "generate_headshots": JobKind.GENERATE.function}
    jobs = [func(coroutine, name=names[name]) for name, coroutine in functions.items()]
    return Worker(
        jobs, redis_pool=pool, queue_name=queue_name, max_jobs=1, poll_delay=0.05, handle_signals=False, burst=True
    )


async def test_same_job_id_enqueues_once_and_reports_position(settings: Settings, redis: Redis) -> None:
    assert settings.redis_url
    pool = await connect_queue(settings.redis_url, settings.queue_name)
    try:
        queue = JobQueue(pool, settings.queue_name)
        first_id = train_job_id("local:ann", 1, 0)
        assert await queue.enqueue_training(first_id, TRAINING) is True
        assert await queue.enqueue_training(first_id, TRAINING) is False  # a double click
        other_id = train_job_id("local:bob", 7, 0)
        assert await queue.enqueue_training(other_id, TRAINING) is True
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
    worker = _one_job_worker(pool, settings.queue_name, train_lora=train_lora)
    queue = JobQueue(pool, settings.queue_name)
    first_id, second_id = train_job_id("local:ann", 1, 0), train_job_id("local:bob", 1, 0)
    await queue.enqueue_training(first_id, TRAINING)
    running = asyncio.create_task(worker.async_run())
    try:
        await asyncio.wait_for(started.wait(), 30)
        await queue.enqueue_training(second_id, TRAINING)
        deadline = time.monotonic() + 10
        while not await redis.exists(in_progress_key_prefix + first_id):  # arq writes it as it starts the job
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert await queue.depth() == 2  # arq's own count still holds the running job
        assert await queue.position(first_id) is None
        assert await queue.position(second_id) == 1
    finally:
        release.set()  # both jobs end, and the burst worker returns with the queue empty
        await asyncio.wait_for(running, 30)
        await worker.close()


async def test_unreachable_redis_fails_fast_naming_it() -> None:
    with pytest.raises(Exception, match="127.0.0.1"):
        await connect_queue("redis://127.0.0.1:1/0", "q")


def _generate_request(user: str) -> GenerateRequest:
    return GenerateRequest(user, "1-1", lora_key(user, 1), resolve_style("linkedin"), 4, 0, output_prefix(user, "1-1"))


async def test_a_request_starts_before_the_trainings_queued_in_the_last_minute(
    settings: Settings, redis: Redis
) -> None:
    # One worker busy with ann's training; bob's training is queued, then carol asks for headshots: FIFO made carol
    # wait for bob's whole training (~45 s on an H200) before her first image.
    assert settings.redis_url
    ran: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def train_lora(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
        ran.append(ctx["job_id"])
        started.set()
        await release.wait()

    async def generate_headshots(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
        ran.append(ctx["job_id"])

    pool = await connect_queue(settings.redis_url, settings.queue_name)
    worker = _one_job_worker(pool, settings.queue_name, train_lora=train_lora, generate_headshots=generate_headshots)
    queue = JobQueue(pool, settings.queue_name)
    ann, bob = train_job_id("local:ann", 1, 0), train_job_id("local:bob", 1, 0)
    carol = generate_job_id("local:carol", "1-1")
    await queue.enqueue_training(ann, TRAINING)
    running = asyncio.create_task(worker.async_run())
    try:
        await asyncio.wait_for(started.wait(), 30)
        await queue.enqueue_training(bob, TRAINING)
        assert await queue.enqueue_generation(carol, _generate_request("local:carol")) is True
        assert await queue.enqueue_generation(carol, _generate_request("local:carol")) is False  # a double click
        assert await queue.position(carol) == 1
        assert await queue.position(bob) == 2
        assert await queue.status(carol) == JobStatus.queued  # due now, not "deferred"
    finally:
        release.set()  # the burst worker runs what is queued and returns with the queue empty
        await asyncio.wait_for(running, 30)
        await worker.close()
    assert ran == [ann, carol, bob]


async def test_a_training_queued_longer_than_the_lead_keeps_its_turn(settings: Settings, redis: Redis) -> None:
    assert settings.redis_url
    pool = await connect_queue(settings.redis_url, settings.queue_name)
    try:
        queue = JobQueue(pool, settings.queue_name, request_lead=timedelta(seconds=1))
        early, late = train_job_id("local:ann", 1, 0), train_job_id("local:bob", 1, 0)
        await queue.enqueue_training(early, TRAINING)
        await asyncio.sleep(1.5)  # past the lead
        await queue.enqueue_training(late, TRAINING)
        first, second = generate_job_id("local:carol", "1-1"), generate_job_id("local:dan", "1-1")
        await queue.enqueue_generation(first, _generate_request("local:carol"))
        await queue.enqueue_generation(second, _generate_request("local:dan"))
        # The early training waited past the lead and keeps its turn; the requests pass the late one, in their order.
        assert [await queue.position(job) for job in (early, first, second, late)] == [1, 2, 3, 4]
    finally:
        await pool.aclose()
