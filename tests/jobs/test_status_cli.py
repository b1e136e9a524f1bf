"""``headshot-status`` against a real Redis: what it prints, and the exit code a compose healthcheck reads."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

from jobs.contract.events import Failed
from jobs.contract.keys import lora_key, selfie_key
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import TrainRequest
from jobs.contract.queue import JobQueue, connect_queue
from jobs.contract.stream import EventPublisher
from jobs.ops.health import Heartbeat, write_heartbeat
from jobs.settings import Settings
from pipeline.errors import Reason

ROOT = Path(__file__).parents[2]


async def status(*args: str) -> tuple[int, str, str]:
    """Run the console script's module in a fresh process, as a healthcheck would."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobs.ops.status_cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    # Columns are padded for the eye; compare words.
    return process.returncode, "\n".join(" ".join(line.split()) for line in out.decode().splitlines()), err.decode()


async def test_status_lists_queue_workers_and_failures(settings: Settings, redis: Redis) -> None:
    assert settings.redis_url
    # 1. One queued job, one worker on this host beating, one failure the user was told about.
    pool = await connect_queue(settings.redis_url, settings.queue_name)
    try:
        request = TrainRequest("local:ann", 1, [selfie_key("local:ann", 1, 0)], lora_key("local:ann", 1))
        await JobQueue(pool, settings.queue_name).enqueue_training("train:local:ann:1:0", request)
    finally:
        await pool.aclose()
    worker = f"{socket.gethostname()}:4242"
    beat = Heartbeat(worker, started_at=time.time() - 300, beat_at=time.time(), jobs_done=3, jobs_failed=1)
    await write_heartbeat(redis, settings.queue_name, beat, interval_s=10)
    failed = Failed(
        user_key="local:bob", job_id="generate:local:bob:r9", kind=JobKind.GENERATE, reason=Reason.OUT_OF_GPU_MEMORY
    )
    await EventPublisher(redis, settings.events_stream).publish(failed)

    # 2. Healthy: one worker is enough, and it runs on this host.
    code, out, err = await status("--redis-url", settings.redis_url)
    assert code == 0, out + err
    assert f"queue {settings.queue_name}: 1 waiting, 0 running" in out
    assert re.search(r"^waiting train:local:ann:1:0 train_lora local:ann enqueued \d+s ago$", out, re.M)
    assert "live workers: 1" in out
    assert re.search(rf"^{worker} up 5m, beat \d+s ago, job -, done 3, failed 1$", out, re.M)
    assert "generate generate:local:bob:r9 local:bob: out_of_gpu_memory" in out
    code, out, _ = await status("--redis-url", settings.redis_url, "--this-host")
    assert code == 0 and f"on host {socket.gethostname()}" in out

    # 3. Unhealthy when more workers are needed than beat.
    code, out, _ = await status("--redis-url", settings.redis_url, "--min-workers", "2")
    assert code == 1
    assert "UNHEALTHY: 1 live worker(s), at least 2 needed" in out


async def test_unreachable_redis_is_named_and_unhealthy() -> None:
    code, out, err = await status("--redis-url", "redis://:hunter2@127.0.0.1:1/0")
    assert code == 1 and out == ""
    assert "cannot reach Redis at redis://:**********@127.0.0.1:1/0" in err and "fix REDIS_URL" in err
    assert "hunter2" not in err and "Traceback" not in err
