"""Chats that refuse: real PTB against the stand-in, real Redis, worker events on the real stream.

The worker is stood in by its events (``EventPublisher``, as the worker publishes them): what is under test is how the
bot posts them when Telegram refuses, not the training.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis

from bot.core.session import SessionState
from bot.telegram import TelegramOptions
from jobs.contract.events import Event, Failed, Started
from jobs.contract.kinds import JobKind
from jobs.contract.stream import EventPublisher
from jobs.settings import Settings
from pipeline.errors import Reason
from tests.bot.telegram.conftest import ALICE, TOKEN, TelegramBot
from tests.bot.telegram.standin import BotApiStandin, Sent, TgUser


@asynccontextmanager
async def _bot(settings: Settings, options: TelegramOptions, model: Any, **changes: Any) -> AsyncIterator[TelegramBot]:
    bot = TelegramBot(settings.model_copy(update={"telegram_token": SecretStr(TOKEN), **changes}), options, model)
    await bot.start()
    try:
        yield bot
    finally:
        await bot.stop()


def _with_text(standin: BotApiStandin, user: TgUser, fragment: str) -> Sent | None:
    found = [sent for sent in standin.messages(user.id) if fragment in sent.text]
    return found[-1] if found else None


async def _queue_training(bot: TelegramBot, standin: BotApiStandin, user: TgUser, photos: list[bytes]) -> str:
    """Selfies as an album captioned /train, then Start training; returns the queued job's id (no worker runs)."""
    await standin.send_album(user, photos, caption="/train")
    status = await standin.wait_for(lambda: _with_text(standin, user, "selfies accepted ("), what="enough selfies")
    await standin.press(user, status, "Start training")
    await standin.wait_for(lambda: _with_text(standin, user, "Training queued"), what="the training ack")
    job = await bot.app.store.active_job(f"telegram:{user.id}")
    assert job is not None
    return job.job_id


async def _publish(redis: Redis, settings: Settings, *events: Event) -> None:
    publisher = EventPublisher(redis, settings.events_stream)
    for event in events:
        await publisher.publish(event)


async def test_a_final_edit_inside_the_throttle_window_that_fails_is_sent_as_a_new_message(
    settings: Settings, telegram_options: TelegramOptions, tiny_model: Any, standin: BotApiStandin, redis: Redis,
    selfie_dir: Path,
) -> None:  # fmt: skip
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())[:3]]
    options = telegram_options.model_copy(update={"edit_interval_s": 5.0})
    async with _bot(settings, options, tiny_model) as bot:
        job_id = await _queue_training(bot, standin, ALICE, photos)
        progress = _with_text(standin, ALICE, "Training queued")
        assert progress is not None

        # 1. A progress edit lands, and opens a 5 s window in which further edits wait.
        await _publish(redis, settings, Started(user_key="telegram:1001", job_id=job_id, kind=JobKind.TRAIN,
                                                worker="w"))  # fmt: skip
        await standin.wait_for(lambda: progress.text == "Training your model: starting…", what="the progress edit")

        # 2. Alice deletes the progress message; then training fails. The final text is not kept for later: its
        # edit goes out now, fails, and the text comes as a new message well inside the window.
        await standin.delete(ALICE, progress.message_id)
        started = time.monotonic()
        await _publish(redis, settings, Failed(user_key="telegram:1001", job_id=job_id, kind=JobKind.TRAIN,
                                               reason=Reason.TRAINING_FAILED))  # fmt: skip
        failed = await standin.wait_for(lambda: _with_text(standin, ALICE, "Training failed on our side"),
                                        timeout_s=4.5, what="the failure, as a new message")  # fmt: skip
        assert time.monotonic() - started < 4.0
        assert failed.message_id > progress.message_id
        await bot.wait_state(ALICE, SessionState.COLLECTING, timeout_s=5)
