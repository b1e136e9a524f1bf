"""Fixtures for the Telegram frontend: the Bot API stand-in, and a bot process (real PTB, Redis, store) beside it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.telegram import TelegramFrontend, TelegramOptions
from jobs.settings import Settings
from tests.bot.telegram.standin import BotApiStandin, TgUser
from tests.harness import RestartableBot

TOKEN = "123456:TEST-secret-token"
ALICE = TgUser(1001, "Alice")
BOB = TgUser(1002, "Bob")


class TelegramBot(RestartableBot):
    """The bot process as ``headshot-bot`` runs it (BotApp, Telegram frontend, delivery); restartable."""

    frontend: TelegramFrontend

    def __init__(self, settings: Settings, options: TelegramOptions, model: Any) -> None:
        super().__init__(settings, model)
        self.options = options

    def make_frontend(self) -> TelegramFrontend:
        return TelegramFrontend(self.settings, self.options)

    def frontend_up(self) -> asyncio.Event:
        return self.frontend.serving


@pytest.fixture
async def standin() -> AsyncIterator[BotApiStandin]:
    server = BotApiStandin(TOKEN)
    await server.start()
    yield server
    await server.stop()
    assert server.unknown == [], f"the bot called Bot API methods the stand-in lacks: {server.unknown}"


@pytest.fixture(scope="session")
def enough_selfies(selfie_dir: Path) -> list[bytes]:
    """Alice's photos for a training: the fewest the tests' settings take (``min_selfies``, 3), as stored files."""
    return [path.read_bytes() for path in sorted(selfie_dir.iterdir())[:3]]


@pytest.fixture
def telegram_options(standin: BotApiStandin) -> TelegramOptions:
    values: dict[str, Any] = {
        "base_url": standin.base_url,
        "base_file_url": standin.base_file_url,
        "edit_interval_s": 0.3,
        "album_wait_s": 0.3,
        "poll_timeout_s": 1,
    }
    return TelegramOptions(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def telegram_bot(
    settings: Settings, telegram_options: TelegramOptions, tiny_model: Any, redis: Redis
) -> AsyncIterator[TelegramBot]:
    running = TelegramBot(
        settings.model_copy(update={"telegram_token": SecretStr(TOKEN)}), telegram_options, tiny_model
    )
    await running.start()
    yield running
    await running.stop()
