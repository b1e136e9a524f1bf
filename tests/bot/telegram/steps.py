"""Steps the Telegram tests share: a bot started with changed settings, a training queued through the chat, and
worker events published as the worker publishes them (no worker runs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis

from bot.telegram import TelegramOptions
from jobs.contract.events import Event
from jobs.contract.stream import EventPublisher
from jobs.settings import Settings
from tests.bot.telegram.conftest import TOKEN, TelegramBot
from tests.bot.telegram.standin import BotApiStandin, Sent, TgUser


@asynccontextmanager
async def running_bot(
    settings: Settings, options: TelegramOptions, model: Any, **changes: Any
) -> AsyncIterator[TelegramBot]:
    """The bot process with ``changes`` to its settings, stopped on the way out."""
    bot = TelegramBot(settings.model_copy(update={"telegram_token": SecretStr(TOKEN), **changes}), options, model)
    await bot.start()
    try:
        yield bot
    finally:
        await bot.stop()


def with_text(standin: BotApiStandin, user: TgUser, fragment: str) -> Sent | None:
    """The bot's latest message to ``user`` containing ``fragment``."""
    found = [sent for sent in standin.messages(user.id) if fragment in sent.text]
    return found[-1] if found else None


async def queue_training(bot: TelegramBot, standin: BotApiStandin, user: TgUser, photos: list[bytes]) -> str:
    """Selfies as an album captioned /train, then Start training; returns the queued job's id (no worker runs)."""
    await standin.send_album(user, photos, caption="/train")
    status = await standin.wait_for(lambda: with_text(standin, user, "selfies accepted ("), what="enough selfies")
    await standin.press(user, status, "Start training")
    await standin.wait_for(lambda: with_text(standin, user, "Training queued"), what="the training ack")
    job = await bot.app.store.active_job(f"telegram:{user.id}")
    assert job is not None
    return job.job_id


async def publish(redis: Redis, settings: Settings, *events: Event) -> None:
    publisher = EventPublisher(redis, settings.events_stream)
    for event in events:
        await publisher.publish(event)
