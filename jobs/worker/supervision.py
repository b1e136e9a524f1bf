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

from jobs.contract.events import Event, EventType
from jobs.settings import Settings
from pipeline.errors import JobFailed

__all__ = [
    "CancelCause",
    "after_job_end",
    "announce_start",
    "cancel_cause",
    "on_job_start",
    "report_stop",
    "worker_redis_settings",
]

log = logging.getLogger(__name__)

_WHAT = {"train": "training", "generate": "rendering"}
_RETRY_HINT = {
    "train": "Your selfies are kept: send /train start to try again.",
    "generate": "Send the same /headshot command to try again.",
}
TOO_MANY_TRIES_TEXT = "Our worker crashed during your {what} ({tries} runs, none finished), so I stopped it. {hint}"
TIMEOUT_TEXT = "Your {what} took longer than the {limit} it may take, so I stopped it. {hint}"


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
    settings: Settings = ctx["settings"]
    key = in_progress_key_prefix + ctx["job_id"]
    ctx["lease_task"] = asyncio.create_task(_keep_lease(ctx["redis"], key, int(settings.job_lease_s * 1000)))


async def after_job_end(ctx: dict[str, Any]) -> None:
    """arq hook: stop renewing; arq has already deleted (or kept) the in-progress key as it should."""
    task: asyncio.Task[None] | None = ctx.pop("lease_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def announce_start(ctx: dict[str, Any], kind: str, user_key: str, worker_name: str) -> None:
    """Publish ``started`` with the try number; after ``job_max_tries`` runs, publish ``failed`` and raise instead."""
    settings: Settings = ctx["settings"]
    job_try = int(ctx.get("job_try", 1))
    if job_try > settings.job_max_tries:
        reason = TOO_MANY_TRIES_TEXT.format(what=_WHAT[kind], tries=job_try - 1, hint=_RETRY_HINT[kind])
        await ctx["events"].publish(Event(EventType.FAILED, user_key, ctx["job_id"], {"kind": kind, "reason": reason}))
        raise JobFailed(f"job {ctx['job_id']} gave up after {job_try - 1} runs")
    data = {"kind": kind, "worker": worker_name, "try": job_try}
    await ctx["events"].publish(Event(EventType.STARTED, user_key, ctx["job_id"], data))


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


async def report_stop(ctx: dict[str, Any], kind: str, user_key: str, output_prefix: str | None = None) -> None:
    """After a cancellation: tell the bot what happened and remove partial outputs; a shutdown says nothing.

    A job stopped by a worker shutting down runs again (arq re-queues it), and its next ``started`` says so.
    """
    cause = cancel_cause(ctx)
    job_id = ctx["job_id"]
    if cause == "shutdown":
        log.info("job %s interrupted by shutdown; it will run again", job_id)
        return
    if output_prefix is not None:
        removed = await ctx["storage"].delete_prefix(output_prefix)
        if removed:
            log.info("removed %d partial outputs of job %s", removed, job_id)
    if cause == "aborted":
        event = Event(EventType.CANCELLED, user_key, job_id, {"kind": kind})
    else:
        settings: Settings = ctx["settings"]
        limit = settings.train_timeout_s if kind == "train" else settings.generate_timeout_s
        reason = TIMEOUT_TEXT.format(what=_WHAT[kind], limit=_duration(limit), hint=_RETRY_HINT[kind])
        event = Event(EventType.FAILED, user_key, job_id, {"kind": kind, "reason": reason, "timeout": True})
    await ctx["events"].publish(event)


def _duration(seconds: float) -> str:
    return f"{round(seconds)} s" if seconds < 90 else f"{round(seconds / 60)} min"
