"""``headshot-status``: the queue, the live workers, the last failures and the dead letters, read from ``REDIS_URL``.

Exit status 0 when healthy (Redis answers and enough workers beat), 1 otherwise, so a compose healthcheck can call
it: ``headshot-status --this-host`` in a worker container, ``headshot-status --min-workers 0`` where only Redis counts.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobs.contract.stream import dead_letter_stream
from jobs.logging_setup import mask_secrets
from jobs.ops.health import age_s, dead_letters, live_workers, queue_counts, queue_jobs, recent_failures
from jobs.settings import Settings

__all__ = ["main", "report"]

HEALTHY, UNHEALTHY = 0, 1  # Docker healthchecks: 0 healthy, 1 unhealthy (2 is reserved)


def redacted(url: str) -> str:
    """The URL with its password masked, fit to print."""
    return mask_secrets(url, [urlsplit(url).password or ""])


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


async def report(
    redis: Redis, settings: Settings, out: TextIO, *, min_workers: int = 1, this_host: bool = False, failures: int = 5
) -> bool:
    """Print the state of the queue to ``out``; True when healthy."""
    now = time.time()
    # 1. The queue: how deep, and its first jobs with their age.
    counts = await queue_counts(redis, settings.queue_name)
    print(f"queue {settings.queue_name}: {counts.queued} waiting, {counts.in_progress} running", file=out)
    for job in await queue_jobs(redis, settings.queue_name):
        state = "running" if job.in_progress else "waiting"
        print(
            f"  {state:8} {job.job_id}  {job.function or '?'}  {job.user_key or '?'}  "
            f"enqueued {_ago(age_s(job.enqueued_at, now))} ago",
            file=out,
        )
    # 2. The workers, from their own heartbeats (arq's health-check key is one per queue).
    workers = await live_workers(redis, settings.queue_name)
    print(f"live workers: {len(workers)}", file=out)
    for beat in workers:
        print(
            f"  {beat.worker}  up {_ago(now - beat.started_at)}, beat {_ago(now - beat.beat_at)} ago, "
            f"job {beat.job_id or '-'}, done {beat.jobs_done}, failed {beat.jobs_failed}",
            file=out,
        )
    # 3. What went wrong lately, as the users were told.
    recent = await recent_failures(redis, settings.events_stream, limit=failures) if failures else []
    print(f"last failures: {len(recent) or 'none'}", file=out)
    for failure in recent:
        when = datetime.fromtimestamp(failure.at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        print(f"  {when}  {failure.kind}  {failure.job_id}  {failure.user_key}: {failure.reason}", file=out)
    # 4. Events the bot gave up posting after its tries (the chat platform kept failing): the dead-letter stream.
    total, letters = await dead_letters(redis, settings.events_stream, limit=failures)
    print(f"dead letters: {total or 'none'} in {dead_letter_stream(settings.events_stream)}", file=out)
    for letter in letters:
        when = datetime.fromtimestamp(letter.at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        print(f"  {when}  {letter.event_type}  {letter.job_id}  {letter.user_key}: {letter.error}", file=out)
    # 5. The verdict.
    if this_host:
        host = socket.gethostname()
        mine = [beat for beat in workers if beat.worker.startswith(f"{host}:")]
        healthy = bool(mine)
        print(f"{'healthy' if healthy else 'UNHEALTHY'}: {len(mine)} live worker(s) on host {host}", file=out)
    else:
        healthy = len(workers) >= min_workers
        print(
            f"{'healthy' if healthy else 'UNHEALTHY'}: {len(workers)} live worker(s), at least {min_workers} needed",
            file=out,
        )
    return healthy


async def _run(url: str, settings: Settings, args: argparse.Namespace) -> int:
    try:
        redis = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    except ValueError as error:  # not a redis:// URL at all
        print(
            f"headshot-status: {redacted(url)} is not a Redis URL ({error}); set REDIS_URL to e.g. "
            "redis://localhost:6379/0.",
            file=sys.stderr,
        )
        return UNHEALTHY
    try:
        await redis.ping()
        print(f"redis {redacted(url)}: reachable")
        ok = await report(
            redis, settings, sys.stdout, min_workers=args.min_workers, this_host=args.this_host, failures=args.failures
        )
    except (RedisError, OSError) as error:
        print(
            f"headshot-status: cannot reach Redis at {redacted(url)} ({error}). Start Redis or fix REDIS_URL.",
            file=sys.stderr,
        )
        return UNHEALTHY
    finally:
        await redis.aclose()
    return HEALTHY if ok else UNHEALTHY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="headshot-status", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", help="override REDIS_URL")
    parser.add_argument("--min-workers", type=int, default=1, help="live workers needed to be healthy (default 1)")
    parser.add_argument(
        "--this-host",
        action="store_true",
        help="healthy only if a worker on this host beats (a worker container's healthcheck)",
    )
    parser.add_argument(
        "--failures", type=int, default=5, help="how many recent failures and dead letters to list (default 5)"
    )
    args = parser.parse_args(argv)
    settings = Settings()
    url = args.redis_url or settings.redis_url
    if not url:
        print(
            "headshot-status needs the Redis the bot and workers share: set REDIS_URL "
            "(e.g. redis://localhost:6379/0) or pass --redis-url.",
            file=sys.stderr,
        )
        return UNHEALTHY
    return asyncio.run(_run(url, settings, args))


if __name__ == "__main__":
    sys.exit(main())
