"""A user who blocks the bot, in Discord: real discord.py against the stand-in, real Redis, the bot's watchdog."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from arq.constants import abort_jobs_ss
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.core.session import JobStatus, SessionState
from bot.discord import DiscordOptions
from bot.local.samples import make_sample_selfies
from jobs.settings import Settings
from tests.bot.discord.conftest import ALICE, BOB, TOKEN, DiscordBot
from tests.bot.discord.standin import DcUser, DiscordStandin

SILENCE_S = 1.0


async def _queue_training(bot: DiscordBot, standin: DiscordStandin, user: DcUser, photos: list[bytes]) -> str:
    """``/train`` with the photos, then Start training; returns the queued job's id (no worker runs)."""
    files = [(f"selfie{n}.jpg", data, "image/jpeg") for n, data in enumerate(photos, 1)]
    await standin.command(user, "train", files=files)
    status = await standin.wait_for(lambda: standin.with_text(user, "selfies accepted ("), what="enough selfies")
    await standin.press(user, status, "Start training")
    await standin.wait_for(lambda: standin.with_text(user, "Training queued"), what="the training ack")
    job = await bot.app.store.active_job(f"discord:{user.id}")
    assert job is not None
    return job.job_id


async def test_the_watchdog_keeps_telling_a_healthy_user_while_another_blocked_the_bot(
    settings: Settings,
    discord_options: DiscordOptions,
    tiny_model: Any,
    standin: DiscordStandin,
    redis: Redis,
    selfie_dir: Path,
    tmp_path: Path,
) -> None:
    settings = settings.model_copy(update={"discord_token": SecretStr(TOKEN), "job_silence_s": SILENCE_S})
    bot = DiscordBot(settings, discord_options, tiny_model)
    await bot.start()
    try:
        # 1. Alice queues a training and blocks the bot: the watchdog's word on her silent job is refused (50007).
        alice_job = await _queue_training(bot, standin, ALICE, [p.read_bytes() for p in sorted(selfie_dir.iterdir())])
        standin.block(ALICE)

        # 2. Bob queues his after hers; nothing runs, so both go silent. Bob still hears within the bound.
        bob_photos = [path.read_bytes() for path in make_sample_selfies(tmp_path / "bob", count=3, seed=7)]
        await _queue_training(bot, standin, BOB, bob_photos)
        queued = time.monotonic()
        await standin.wait_for(
            lambda: standin.with_text(BOB, "Still in the queue for your training"),
            timeout_s=10,
            what="the watchdog's word to Bob",
        )
        assert time.monotonic() - queued < SILENCE_S * 1.25 + 2.0  # the bound plus a round, plus slack

        # 3. Alice's job is given up as undeliverable: her session is free, and the queue will skip the job.
        await bot.wait_state(ALICE, SessionState.COLLECTING, timeout_s=5)
        job = await bot.app.store.job(f"discord:{ALICE.id}", alice_job)
        assert job is not None and job.status == JobStatus.UNDELIVERABLE
        assert await redis.zscore(abort_jobs_ss, alice_job) is not None
        assert [call.status for call in standin.called("POST", f"/channels/{ALICE.dm}/messages")][-1] == 403
    finally:
        await bot.stop()
