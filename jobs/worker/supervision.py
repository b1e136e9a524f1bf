"""Keeping running jobs honest: short leases, counted tries, and telling why a job stopped.

arq marks a started job with an in-progress key that lives for the longest job timeout (an hour for training), and
only another run of the job can start once that key is gone. So a worker killed mid-job (SIGKILL, OOM killer, lost
host) would leave its job stuck for an hour. Here the key is cut to ``job_lease_s`` when the job starts and renewed
every third of that while the worker lives: a dead worker's job is picked up again by any live worker within about
``job_lease_s`` (plus arq's poll delay, 0.5 s).

Each run carries arq's ``job_try``; the ``started`` event names it, so the bot can tell the user a job restarted.
After ``job_max_tries`` runs the job fails for good with a reason in plain words (arq's own limit sits one higher,
so our code, not arq's silent bookkeeping, is what ends it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs.contract.events import Cancelled, Failed, Started
from jobs.contract.kinds import JobKind
from jobs.worker.state import worker_state
from pipeline.errors import HeadshotError, JobFailed, Reason

__all__ = [
    "CancelCause",
    "after_job_end",
    "announce_start",
    "cancel_cause",
    "on_job_start",
    "report_failure",
    "report_stop",
    "worker_redis_settings",
]

log = logging.getLogger(__name__)


# How long a worker rides out a Redis outage (a restart, a failover) before it gives up and exits for its supervisor
# to restart it: 60 tries, backing off to 2 s apart, is about two minutes.
REDIS_RETRIES = 60


def worker_redis_settings(redis_url: str) -> RedisSettings:
    """arq's settings for ``redis_url``, with every command retried through a Redis restart instead of failing.

    Without this, the first command after Redis goes away raises out of arq's poll loop and the worker exits.
    The bot keeps redis-py's default (fail fast): its handlers answer at once and its delivery loop retries itself.
    """
    settings = RedisSettings.from_dsn(redis_url)
    settings.retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), REDIS_RETRIES)
    # A refused connection surfaces as a bare OSError while connecting; retry it like redis-py's own errors.
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    return settings


async def _keep_lease(redis: Any, key: str, lease_ms: int) -> None:
    while True:
        try:
            await redis.pexpire(key, lease_ms)  # a no-op once arq has deleted the key at the job's end
        except RedisError:
            # Redis restarting: the key keeps its last expiry; the next renewal (or the re-run) takes over.
            log.warning("renewing the lease of %s failed; retrying", key)
        await asyncio.sleep(lease_ms / 3000)


async def on_job_start(ctx: dict[str, Any]) -> None:
    """arq hook: shorten the job's in-progress key to a lease and keep renewing it while this worker lives."""
    settings = worker_state(ctx).settings
    key = in_progress_key_prefix + ctx["job_id"]
    ctx["lease_task"] = asyncio.create_task(_keep_lease(ctx["redis"], key, int(settings.job_lease_s * 1000)))


async def after_job_end(ctx: dict[str, Any]) -> None:
    """arq hook: stop renewing; arq has already deleted (or kept) the in-progress key as it should."""
    task: asyncio.Task[None] | None = ctx.pop("lease_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def announce_start(ctx: dict[str, Any], kind: JobKind, user_key: str, worker_name: str) -> None:
    """Publish ``started`` with the try number; after ``job_max_tries`` runs, publish ``failed`` and raise instead."""
    state = worker_state(ctx)
    job_id: str = ctx["job_id"]
    job_try = int(ctx.get("job_try", 1))
    if job_try > state.settings.job_max_tries:
        error = JobFailed(
            f"job {job_id} gave up after {job_try - 1} runs", reason=Reason.TOO_MANY_TRIES, tries=job_try - 1
        )
        await state.events.publish(
            Failed(user_key=user_key, job_id=job_id, kind=kind, reason=error.reason, params=error.params)
        )
        raise error
    await state.events.publish(
        Started(user_key=user_key, job_id=job_id, kind=kind, worker=worker_name, try_number=job_try)
    )


# "aborted": the user's /cancel; "timeout": the job type's time limit; "shutdown": the worker is stopping.
CancelCause = Literal["aborted", "timeout", "shutdown"]


def cancel_cause(ctx: dict[str, Any]) -> CancelCause:
    """Why the running job was cancelled, told apart by who cancelled it.

    arq cancels the job's task itself for an abort (and lists it in ``aborting_tasks``) and for its timeout
    (``asyncio.wait_for``); on shutdown it cancels the outer task that runs the job, which is then ``cancelling()``.
    """
    worker = ctx.get("worker")
    job_id = ctx["job_id"]
    if worker is None:
        return "aborted"
    if job_id in worker.aborting_tasks:
        return "aborted"
    outer = worker.tasks.get(job_id)
    if outer is not None and outer.cancelling():
        return "shutdown"
    return "timeout"


async def report_stop(ctx: dict[str, Any], kind: JobKind, user_key: str, output_prefix: str | None = None) -> None:
    """After a cancellation: tell the bot what happened and remove partial outputs; a shutdown says nothing.

    A job stopped by a worker shutting down runs again (arq re-queues it), and its next ``started`` says so.
    """
    cause = cancel_cause(ctx)
    state = worker_state(ctx)
    job_id = ctx["job_id"]
    if cause == "shutdown":
        log.info("job %s interrupted by shutdown; it will run again", job_id)
        return
    if output_prefix is not None:
        removed = await state.storage.delete_prefix(output_prefix)
        if removed:
            log.info("removed %d partial outputs of job %s", removed, job_id)
    if cause == "aborted":
        await state.events.publish(Cancelled(user_key=user_key, job_id=job_id, kind=kind))
        return
    limit = state.settings.train_timeout_s if kind == JobKind.TRAIN else state.settings.generate_timeout_s
    timed_out = Failed(user_key=user_key, job_id=job_id, kind=kind, reason=Reason.TIMED_OUT, params={"limit_s": limit})
    await state.events.publish(timed_out)


async def report_failure(
    ctx: dict[str, Any], kind: JobKind, user_key: str, error: Exception, *, shown: tuple[type[HeadshotError], ...]
) -> None:
    """Publish ``failed``: an error of the ``shown`` kinds with its own reason, anything else logged in full and
    reported as the kind's generic failure."""
    if isinstance(error, shown):
        reason, params = error.reason, error.params
    else:
        log.error("%s job %s failed", kind, ctx["job_id"], exc_info=error)
        reason, params = (Reason.TRAINING_FAILED if kind == JobKind.TRAIN else Reason.RENDERING_FAILED), {}
    failed = Failed(user_key=user_key, job_id=ctx["job_id"], kind=kind, reason=reason, params=params)
    await worker_state(ctx).events.publish(failed)
