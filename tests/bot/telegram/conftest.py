"""Fixtures for the Telegram frontend: the Bot API stand-in, and a bot process (real PTB, Redis, store) beside it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.app import BotApp
from bot.core.session import SessionState
from bot.telegram import TelegramFrontend, TelegramOptions
from jobs.settings import Settings
from tests.bot.telegram.standin import BotApiStandin, TgUser
from tests.harness import reached_state, run_burst_worker

TOKEN = "123456:TEST-secret-token"
ALICE = TgUser(1001, "Alice")
BOB = TgUser(1002, "Bob")


class TelegramBot:
    """The bot process as ``headshot-bot`` runs it (BotApp, Telegram frontend, delivery); restartable."""

    def __init__(self, settings: Settings, options: TelegramOptions, pipe: Any) -> None:
        self.settings = settings
        self.options = options
        self.pipe = pipe

    async def start(self) -> None:
        assert self.settings.redis_url is not None
        self.app = BotApp(self.settings, self.settings.redis_url, consumer_name="test-bot")
        await self.app.__aenter__()
        self.frontend = TelegramFrontend(self.settings, self.options)
        self.app.start_delivery({self.frontend.port.platform: self.frontend.port})
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.frontend.run(self.app, self._stop))
        ready = asyncio.create_task(self.frontend.port.ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()  # raises what stopped the frontend
        assert ready in done, "the Telegram frontend did not come up in 30 s"

    async def stop(self) -> None:
        self._stop.set()
        await self._task
        await self.app.__aexit__(None, None, None)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def run_worker(self) -> None:
        await run_burst_worker(self.settings, self.pipe)

    async def wait_state(self, user: TgUser, state: SessionState, timeout_s: float = 60) -> None:
        key = f"telegram:{user.id}"
        if await reached_state(self.app.store, key, state, timeout_s):
            return
        raise AssertionError(f"{key} never reached {state!r}")


@pytest.fixture
async def standin() -> AsyncIterator[BotApiStandin]:
    server = BotApiStandin(TOKEN)
    await server.start()
    yield server
    await server.stop()
    assert server.unknown == [], f"the bot called Bot API methods the stand-in lacks: {server.unknown}"


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
async def telegram_bot(settings: Settings, telegram_options: TelegramOptions, tiny_pipe: Any,
                       redis: Redis) -> AsyncIterator[TelegramBot]:  # fmt: skip
    running = TelegramBot(settings.model_copy(update={"telegram_token": SecretStr(TOKEN)}), telegram_options, tiny_pipe)
    await running.start()
    yield running
    await running.stop()
