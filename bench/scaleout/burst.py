"""One burst of simulated customers, driven as the bot drives them: every customer's training enqueued at once, their
headshots enqueued as each ``trained`` event arrives; then the events and arq's results say what ran, twice or not at
all."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

from arq.jobs import Job
from redis.asyncio import Redis

from bench.scaleout.plan import EVENTS_STREAM, QUEUE_NAME, PhaseResult, ScaleoutPlan
from jobs.contract.events import Cancelled, Failed, ImagesReady, Started, Trained, event_from_fields
from jobs.contract.keys import lora_key, output_prefix, selfie_key
from jobs.contract.payloads import GenerateRequest, TrainRequest, generate_job_id, train_job_id
from jobs.contract.queue import JobQueue
from jobs.storage import LocalStorage
from pipeline.styles import resolve_style

__all__ = ["JobClock", "drive_burst", "enqueue_headshots", "store_selfies"]


async def store_selfies(storage: LocalStorage, plan: ScaleoutPlan, user_key: str) -> list[str]:
    keys = []
    for number, image in enumerate(plan.selfies, start=1):
        key = selfie_key(user_key, 1, number)
        await storage.put(key, image)
        keys.append(key)
    return keys


async def drive_burst(
    queue: JobQueue, redis: Redis, storage: LocalStorage, plan: ScaleoutPlan, customers: int, result: PhaseResult
) -> None:
    """Enqueue every customer's training at once; enqueue their headshots when trained; wait for all images."""
    users = [f"scaleout:customer-{number:03d}" for number in range(1, customers + 1)]
    expected: set[str] = set()
    clock = JobClock()
    for number, user in enumerate(users):
        request = TrainRequest(user, 1, await store_selfies(storage, plan, user), lora_key(user, 1), seed=number)
        job_id = train_job_id(user, 1, 1)
        seconds, microseconds = await redis.time()  # Redis's clock, the one the events' stream ids are read on
        clock.enqueued(user, seconds * 1000 + microseconds // 1000)
        await queue.enqueue_training(job_id, request)
        expected.add(job_id)
    result.jobs_expected = customers * (1 + plan.requests_per_customer)

    started: Counter[str] = Counter()
    finished: set[str] = set()
    last_id = "0"
    deadline = time.monotonic() + plan.timeout_s
    while len(finished) < result.jobs_expected and not result.failures and time.monotonic() < deadline:
        reply = await redis.xread({EVENTS_STREAM: last_id}, block=1000, count=100)
        for _stream, entries in reply or []:
            for raw_id, fields in entries:
                last_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                event = event_from_fields(last_id, {_text(k): _text(v) for k, v in fields.items()})
                clock.saw(event, last_id)
                if isinstance(event, Started):
                    started[event.job_id] += 1
                    result.jobs_per_worker[event.worker] = result.jobs_per_worker.get(event.worker, 0) + 1
                elif isinstance(event, Trained):
                    finished.add(event.job_id)
                    expected |= await enqueue_headshots(queue, plan, event.user_key)
                elif isinstance(event, ImagesReady):
                    finished.add(event.job_id)
                elif isinstance(event, Failed | Cancelled):
                    reason = event.reason if isinstance(event, Failed) else ""
                    result.failures.append(f"{event.job_id}: {event.type.value} {reason}")
    result.jobs_completed = len(finished)
    result.job_seconds = clock.by_kind()
    result.first_headshot_s = clock.first_headshots()
    result.jobs_run_twice = sorted(job for job, count in started.items() if count > 1)
    # arq's own record agrees: a job whose result says try 2 ran twice, even if its first run published nothing.
    for job_id in sorted(finished):
        info = await Job(job_id, queue.pool, _queue_name=QUEUE_NAME).result_info()
        if info is not None and info.job_try > 1 and job_id not in result.jobs_run_twice:
            result.jobs_run_twice.append(job_id)
    result.jobs_lost = sorted(expected - finished) + ["(never enqueued)"] * (result.jobs_expected - len(expected))


async def enqueue_headshots(queue: JobQueue, plan: ScaleoutPlan, user: str) -> set[str]:
    job_ids = set()
    for number in range(plan.requests_per_customer):
        count = min(plan.per_request, plan.headshots - number * plan.per_request)
        request_id = f"1-{number + 1}"
        prefix = output_prefix(user, request_id)
        style = resolve_style(plan.style)
        request = GenerateRequest(user, request_id, lora_key(user, 1), style, count, 1000 * number, prefix)
        job_id = generate_job_id(user, request_id)
        await queue.enqueue_generation(job_id, request)
        job_ids.add(job_id)
    return job_ids


class JobClock:
    """Each job's seconds from its first "started" event to its "trained" or "images ready", and each customer's from
    their training's enqueue (``/train start``) to their first headshots, read from the events' stream ids (Redis's
    milliseconds, one clock for every worker)."""

    KINDS = {Trained: "training", ImagesReady: "headshots"}

    def __init__(self) -> None:
        self._started_ms: dict[str, int] = {}
        self._seconds: dict[str, list[float]] = {}
        self._enqueued_ms: dict[str, int] = {}
        self._first_headshot: dict[str, float] = {}

    def enqueued(self, user_key: str, at_ms: int) -> None:
        self._enqueued_ms[user_key] = at_ms

    def saw(self, event: Any, stream_id: str) -> None:
        at_ms = int(stream_id.split("-")[0])
        if isinstance(event, Started):
            self._started_ms.setdefault(event.job_id, at_ms)
        elif type(event) in self.KINDS and event.job_id in self._started_ms:
            seconds = (at_ms - self._started_ms.pop(event.job_id)) / 1000
            self._seconds.setdefault(self.KINDS[type(event)], []).append(seconds)
        if isinstance(event, ImagesReady) and event.user_key in self._enqueued_ms:
            self._first_headshot.setdefault(event.user_key, (at_ms - self._enqueued_ms[event.user_key]) / 1000)

    def first_headshots(self) -> list[float]:
        """Seconds from each customer's training enqueued to their first headshots ready, in enqueue order."""
        return [self._first_headshot[user] for user in self._enqueued_ms if user in self._first_headshot]

    def by_kind(self) -> dict[str, dict[str, float]]:
        return {
            kind: {
                "jobs": len(times),
                "min_s": round(min(times), 2),
                "median_s": round(statistics.median(times), 2),
                "total_s": round(sum(times), 2),
            }
            for kind, times in self._seconds.items()
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
