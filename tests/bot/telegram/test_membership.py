"""A user who blocks the bot: Telegram says so (``my_chat_member``, status ``kicked``) to a bot that asked for it, and
the bot ends their job at once instead of posting into a chat that refuses everything."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from bot.core.session import JobStatus, SessionState
from bot.telegram import TelegramOptions
from jobs.contract.events import Progress, Started
from jobs.contract.kinds import JobKind
from jobs.settings import Settings
from tests.bot.telegram.conftest import ALICE
from tests.bot.telegram.standin import BotApiStandin
from tests.bot.telegram.steps import publish, queue_training, running_bot, with_text

USER_KEY = f"telegram:{ALICE.id}"


async def _until_settled(redis: Redis, settings: Settings, timeout_s: float = 5) -> None:
    """Until the bot has read and acked every event on the stream."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        [(last_id, _)] = await redis.xrevrange(settings.events_stream, count=1)
        [group] = await redis.xinfo_groups(settings.events_stream)
        if group["last-delivered-id"] == last_id and group["pending"] == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"events still unsettled after {timeout_s} s: {group}")


async def test_a_user_who_blocks_the_bot_mid_training_has_the_job_ended_and_is_served_again_after_unblocking(
    settings: Settings,
    telegram_options: TelegramOptions,
    tiny_model: Any,
    standin: BotApiStandin,
    redis: Redis,
    enough_selfies: list[bytes],
) -> None:
    async with running_bot(settings, telegram_options, tiny_model) as bot:
        job_id = await queue_training(bot, standin, ALICE, enough_selfies)
        store = bot.app.store

        # 1. Alice blocks the bot while her training is queued: her job ends, her session is no longer TRAINING.
        await standin.block(ALICE)
        await bot.wait_state(ALICE, SessionState.COLLECTING, timeout_s=5)
        job = await store.job(USER_KEY, job_id)
        assert job is not None and job.status == JobStatus.UNDELIVERABLE
        assert await store.has_left(USER_KEY)

        # 2. The worker's news of that job is settled without a word to her: not one call, not even a refused one.
        calls_before = len(standin.calls)
        await publish(
            redis,
            settings,
            Started(user_key=USER_KEY, job_id=job_id, kind=JobKind.TRAIN, worker="w"),
            Progress(user_key=USER_KEY, job_id=job_id, done=5, total=20),
        )
        await _until_settled(redis, settings)
        assert [
            call.method for call in standin.calls[calls_before:] if call.params.get("chat_id") == str(ALICE.id)
        ] == []

        # 3. She unblocks the bot: the chat reaches her again, and her next message is answered.
        await standin.unblock(ALICE)
        await standin.send_text(ALICE, "/status")
        status = await standin.wait_for(lambda: with_text(standin, ALICE, "Session:"), what="her /status")
        assert "Session: collecting" in status.text
        assert not await store.has_left(USER_KEY)
