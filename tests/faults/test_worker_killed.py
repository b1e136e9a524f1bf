"""A worker process SIGKILLed mid-training: the job runs again within the lease, the user is told, and gets results.

And a job whose runs keep dying fails for good: the user reads why, and their session is free for a new try.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.core.session import SessionState
from jobs.settings import Settings
from tests.faults.processes import WorkerProcess
from tests.harness import Harness


async def _training_killed_midway(
    harness: Harness, worker: WorkerProcess, selfie_dir: Path, *, graceful: bool = False
) -> None:
    harness.start_delivery()
    await harness.say(f"/train {selfie_dir}")
    await worker.start()
    assert "queued" in await harness.say("/train start")
    await harness.seconds_until_said("% (step", timeout_s=120)  # progress: the worker is mid-training
    if graceful:
        worker.stop()  # SIGTERM, as a deploy or a scale-down stops it
    else:
        worker.kill()


async def test_killed_worker_job_runs_again_and_user_gets_the_model(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    # Steps enough to be killed after the first progress report (one a step here), few enough to train again fast.
    settings = settings.model_copy(update={"train_steps": 60, "job_lease_s": 2.0})
    async with Harness(settings, tiny_model, tmp_path / "out") as harness:
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        await _training_killed_midway(harness, worker, selfie_dir)
        killed = time.monotonic()
        # Started as production starts it, the worker kept its start's objects out of garbage collections.
        assert "objects of the start kept out of garbage collections" in worker.log_path.read_text(errors="replace")
        # A surviving worker (in-process here) takes the job over once the dead worker's lease runs out.
        survivor = asyncio.create_task(harness.run_worker())
        await harness.seconds_until_said("training restarted (try 2)", timeout_s=30)
        assert time.monotonic() - killed < settings.job_lease_s + 5  # the bound: the lease, not the 1 h timeout
        await survivor
        # Delivery moves the session to READY, then posts the message: wait for the message itself.
        await harness.seconds_until_said("Your model is ready", timeout_s=30)
        await harness.wait_state(SessionState.READY)
        chat = "\n".join(harness.lines)
        assert chat.count("Your model is ready") == 1
        assert "cancelled" not in chat and "went wrong" not in chat
        assert "ready" in await harness.say("/status")


async def test_job_whose_runs_keep_dying_fails_in_plain_words_and_frees_the_session(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    settings = settings.model_copy(update={"train_steps": 120, "job_lease_s": 1.0, "job_max_tries": 1})
    async with Harness(settings, tiny_model, tmp_path / "out") as harness:
        await _training_killed_midway(harness, WorkerProcess(settings, tmp_path / "worker.log"), selfie_dir)
        await harness.run_worker()  # the next run is over the limit: it reports instead of training
        await harness.wait_state(SessionState.COLLECTING)
        chat = "\n".join(harness.lines)
        assert "Our worker crashed during your training (1 runs, none finished)" in chat
        assert "selfies are kept" in chat
        # The session is free: a new attempt is taken at once, under a fresh job id.
        assert "Training queued" in await harness.say("/train start")


async def test_worker_stopped_mid_training_hands_the_job_on_without_calling_it_cancelled(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    settings = settings.model_copy(update={"train_steps": 60})  # the default 30 s lease: a stop must not wait on it
    async with Harness(settings, tiny_model, tmp_path / "out") as harness:
        await _training_killed_midway(
            harness, WorkerProcess(settings, tmp_path / "worker.log"), selfie_dir, graceful=True
        )
        stopped = time.monotonic()
        survivor = asyncio.create_task(harness.run_worker())
        await harness.seconds_until_said("training restarted (try 2)", timeout_s=30)
        assert time.monotonic() - stopped < 10
        await survivor
        await harness.seconds_until_said("Your model is ready", timeout_s=30)
        await harness.wait_state(SessionState.READY)
        chat = "\n".join(harness.lines)
        assert "cancelled" not in chat and chat.count("Your model is ready") == 1
