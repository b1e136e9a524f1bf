"""No job is silent longer than the bound: the watchdog speaks for queued, lost and unreported jobs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.core.session import SessionState
from jobs.settings import Settings
from tests.harness import Harness

SILENCE_S = 1.0


@contextlib.asynccontextmanager
async def _queued_training(
    settings: Settings, tiny_model: Any, tmp_path: Path, selfie_dir: Path
) -> AsyncIterator[Harness]:
    """A chat whose training job was enqueued, with the silence bound at ``SILENCE_S`` and no worker running."""
    settings = settings.model_copy(update={"job_silence_s": SILENCE_S})
    async with Harness(settings, tiny_model, tmp_path / "out") as harness:
        harness.start_delivery()
        await harness.say(f"/train {selfie_dir}")
        await harness.say("/train start")
        yield harness


async def test_a_job_waiting_in_the_queue_gets_a_word_within_the_bound(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    async with _queued_training(settings, tiny_model, tmp_path, selfie_dir) as harness:  # no worker: it just waits
        waited = await harness.seconds_until_said("Still in the queue for your training (position 1)", timeout_s=10)
        assert waited < SILENCE_S * 1.25 + 1.0  # the bound plus a round, plus slack for a busy CI machine


async def test_a_job_the_queue_lost_is_reported_and_the_session_freed(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    async with _queued_training(settings, tiny_model, tmp_path, selfie_dir) as harness:
        await redis.flushdb()  # Redis came back without its data: the queued job is gone
        await harness.seconds_until_said("I lost track of your training", timeout_s=10)
        await harness.wait_state(SessionState.COLLECTING)
        assert await harness.selfie_count() == 4
        assert "Training queued" in await harness.say("/train start")


async def test_a_finished_job_whose_event_was_lost_is_delivered_from_its_result(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    settings = settings.model_copy(update={"job_silence_s": SILENCE_S})
    async with Harness(settings, tiny_model, tmp_path / "out") as harness:
        await harness.say(f"/train {selfie_dir}")
        await harness.say("/train start")
        await harness.run_worker()  # trains while no delivery runs ...
        await redis.delete(settings.events_stream)  # ... and its events are lost
        harness.start_delivery()
        await harness.wait_state(SessionState.READY, timeout_s=10)
        assert "\n".join(harness.lines).count("Your model is ready") == 1
        assert "Rendering" in await harness.say("/headshot studio")  # the recovered model works
