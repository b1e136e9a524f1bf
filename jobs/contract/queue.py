"""Enqueue helpers the bot uses: light (arq + redis only), never importing the pipeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import abort_jobs_ss, in_progress_key_prefix
from arq.jobs import Job, JobStatus
from arq.utils import timestamp_ms

from jobs.contract.kinds import JobKind
from jobs.contract.payloads import GenerateRequest, TrainRequest

__all__ = ["REQUEST_LEAD", "JobQueue", "connect_queue"]

# arq takes jobs in the order of their score, the enqueue time; a generation job (a /headshot request, a preview) is
# scored as if enqueued this much earlier, so it starts before the training jobs queued in the last minute: a user
# who asked for headshots is not held behind other users' trainings (~45 s each on an H200), while a training is
# passed only by the requests enqueued within a minute after it, never indefinitely. Requests keep their own order.
REQUEST_LEAD = timedelta(seconds=60)


async def connect_queue(redis_url: str, queue_name: str) -> ArqRedis:
    """An arq pool on ``redis_url``; fails fast (3 tries) with the URL's host in the error when Redis is away."""
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_retries = 3
    # arq's 1 s to open a connection is too little for a busy host: a local Redis on two loaded cores (CI) once took
    # longer, and a user's /train start failed. A refused connection (Redis away) still fails at once.
    settings.conn_timeout = 5
    return await create_pool(settings, default_queue_name=queue_name)


class JobQueue:
    """The bot's side of the queue: enqueue with deterministic ids, ask positions, request aborts."""

    def __init__(self, pool: ArqRedis, queue_name: str, *, request_lead: timedelta = REQUEST_LEAD) -> None:
        self.pool = pool
        self.queue_name = queue_name
        self.request_lead = request_lead  # zero: plain enqueue order (the scale-out benchmark's baseline)

    async def enqueue_training(self, job_id: str, request: TrainRequest) -> bool:
        """True when this call enqueued the job; False when a job with this id already exists (a double click)."""
        job = await self.pool.enqueue_job(
            JobKind.TRAIN.function, request.to_dict(), _job_id=job_id, _queue_name=self.queue_name
        )
        return job is not None

    async def enqueue_generation(self, job_id: str, request: GenerateRequest) -> bool:
        """As ``enqueue_training``; the job goes ahead of trainings enqueued less than ``request_lead`` ago."""
        job = await self.pool.enqueue_job(
            JobKind.GENERATE.function,
            request.to_dict(),
            _job_id=job_id,
            _queue_name=self.queue_name,
            _defer_until=datetime.now(UTC) - self.request_lead,  # a score in the past: due now, ranked earlier
        )
        return job is not None

    async def position(self, job_id: str) -> int | None:
        """1 for the next job to start; None once the job is running or done.

        arq keeps a running job in its queue until it ends (its in-progress key says it runs), so the jobs ahead
        that are running are not counted, and a running job has no position: ``/delete`` tells a running job
        from a queued one by this.
        """
        rank = await self.pool.zrank(self.queue_name, job_id)
        if rank is None:
            return None
        ahead = await self.pool.zrange(self.queue_name, 0, rank)  # this job last
        async with self.pool.pipeline(transaction=False) as pipe:
            for queued in ahead:
                pipe.exists(in_progress_key_prefix + queued.decode())
            running = await pipe.execute()
        if running[-1]:
            return None
        return int(rank) + 1 - sum(map(bool, running[:-1]))

    async def status(self, job_id: str) -> JobStatus:
        return await Job(job_id, self.pool, _queue_name=self.queue_name).status()

    async def request_abort(self, job_id: str) -> None:
        """Ask the workers to drop the job: skipped if queued, cancelled if running. Returns at once."""
        await self.pool.zadd(abort_jobs_ss, {job_id: timestamp_ms()})

    async def depth(self) -> int:
        return int(await self.pool.zcard(self.queue_name))
