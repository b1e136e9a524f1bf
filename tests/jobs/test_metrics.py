"""A real worker on the tiny model serves Prometheus metrics over HTTP and writes JSON log lines tagged per job."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from arq.constants import job_key_prefix
from arq.jobs import Job
from pydantic import SecretStr
from redis.asyncio import Redis

from jobs.contract.keys import lora_key, output_prefix, selfie_key
from jobs.contract.payloads import GenerateRequest, TrainRequest
from jobs.contract.queue import JobQueue, connect_queue
from jobs.ops.health import live_workers
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.worker.app import build_worker
from pipeline.styles import resolve_style
from tests.harness import stop_worker
from tests.operations import captured_logs, scrape

TOKEN = "123456:SECRET-telegram-token"


async def test_worker_job_moves_metrics_and_json_logs_carry_job_id(
    settings: Settings, tiny_model: Any, selfie_dir: Path, redis: Redis, unused_tcp_port: int
) -> None:
    assert settings.redis_url
    operations = {"worker_metrics_port": unused_tcp_port, "health_check_interval_s": 1, "log_format": "json"}
    settings = settings.model_copy(update={**operations, "train_steps": 2, "telegram_token": SecretStr(TOKEN)})
    # 1. One training job on three real selfies, and one generation whose LoRA does not exist (an internal failure).
    storage = LocalStorage(settings.resolved_storage_dir)
    keys = [selfie_key("local:ann", 1, number) for number in range(3)]
    for key, path in zip(keys, sorted(selfie_dir.glob("*.jpg")), strict=False):
        await storage.put(key, path.read_bytes())
    pool = await connect_queue(settings.redis_url, settings.queue_name)
    queue = JobQueue(pool, settings.queue_name)
    await queue.enqueue_training("train:local:ann:1:0", TrainRequest("local:ann", 1, keys, lora_key("local:ann", 1)))
    linkedin = resolve_style("linkedin")
    no_lora = lora_key("local:ann", 9)  # a session that never trained: the job fails on it
    missing = GenerateRequest("local:ann", "r1", no_lora, linkedin, 1, 7, output_prefix("local:ann", "r1"))
    await queue.enqueue_generation("generate:local:ann:r1", missing)
    # A job deferred by an hour waits in the queue while the worker idles: the burst worker runs until it is gone.
    await pool.enqueue_job(
        "generate_headshots", missing.to_dict(), _job_id="later", _defer_by=3600, _queue_name=settings.queue_name
    )
    # In burst mode, so it returns by itself once the queue is empty (a cancel can cut short a just-begun poll).
    worker = build_worker(
        settings, settings.redis_url, poll_delay=0.05, handle_signals=False, model=tiny_model, burst=True
    )
    with captured_logs(settings) as logs:
        running = asyncio.create_task(worker.async_run())
        try:
            # 2. Both jobs end, and the deferred one waits.
            await Job("train:local:ann:1:0", pool, _queue_name=settings.queue_name).result(timeout=120)
            with pytest.raises(KeyError, match=re.escape(no_lora)):
                await Job("generate:local:ann:r1", pool, _queue_name=settings.queue_name).result(timeout=60)
            metrics = await scrape(unused_tcp_port)
            assert len(await live_workers(redis, settings.queue_name)) == 1
            # Taken off the queue (as arq's own clean-up does), so the queue is empty and the burst worker ends.
            await pool.zrem(settings.queue_name, "later")
            await pool.delete(job_key_prefix + "later")
            await asyncio.wait_for(running, 30)
        finally:
            await stop_worker(worker, running)  # ended already, unless an assertion above failed
            await pool.aclose()

    # 3. The scrape shows what the operator needs: one job of each kind, how it ended, and the queue.
    assert metrics[("headshot_jobs_started_total", (("kind", "train"),))] == 1
    assert metrics[("headshot_jobs_started_total", (("kind", "generate"),))] == 1
    assert metrics[("headshot_job_duration_seconds_count", (("kind", "train"), ("outcome", "ok")))] == 1
    assert metrics[("headshot_job_duration_seconds_sum", (("kind", "train"), ("outcome", "ok")))] > 0
    assert metrics[("headshot_job_duration_seconds_count", (("kind", "generate"), ("outcome", "error")))] == 1
    assert metrics[("headshot_job_failures_total", (("cause", "internal"), ("kind", "generate")))] == 1
    assert metrics[("headshot_queue_depth", ())] == 1
    assert metrics[("headshot_queue_in_progress", ())] == 0
    assert metrics[("headshot_live_workers", ())] == 1
    assert metrics[("headshot_redis_up", ())] == 1
    assert not any(name.startswith("headshot_gpu_") for name, _ in metrics)  # a CPU worker has no GPU memory
    # The training's torch section took its GPU turn at once (one job at a time: nobody to wait for).
    assert metrics[("headshot_worker_gpu_wait_seconds_count", ())] >= 1
    assert metrics[("headshot_worker_gpu_wait_seconds_bucket", (("le", "0.1"),))] >= 1
    # A worker that stopped cleanly no longer counts as live.
    assert await live_workers(redis, settings.queue_name) == []

    # 4. Every log line is JSON; the job's lines (arq's own included) carry its id and user, never the token.
    text = logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    train_lines = [line for line in lines if line.get("job_id") == "train:local:ann:1:0"]
    assert any(line["logger"] == "arq.worker" and "train_lora" in line["message"] for line in train_lines)
    failed = [line for line in lines if line.get("job_id") == "generate:local:ann:r1" and "exception" in line]
    assert failed and failed[0]["user_key"] == "local:ann" and failed[0]["level"] == "ERROR"
    assert TOKEN not in text
