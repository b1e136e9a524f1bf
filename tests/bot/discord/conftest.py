"""Fixtures for the Discord frontend: the Discord stand-in, and a bot process (real discord.py, Redis, store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import discord
import pytest
from discord.gateway import DiscordWebSocket
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.app import BotApp
from bot.core.session import SessionState
from bot.discord import DiscordFrontend, DiscordOptions
from jobs.settings import Settings
from tests.bot.discord.standin import DcUser, DiscordStandin
from tests.harness import reached_state, run_burst_worker

TOKEN = "MTIzNDU2.test.secret-discord-token"
ALICE = DcUser(2001, "Alice")
BOB = DcUser(2002, "Bob")


class DiscordBot:
    """The bot process as ``headshot-bot`` runs it (BotApp, Discord frontend, delivery); restartable."""

    def __init__(self, settings: Settings, options: DiscordOptions, pipe: Any) -> None:
        self.settings = settings
        self.options = options
        self.pipe = pipe

    async def start(self) -> None:
        assert self.settings.redis_url is not None
        self.app = BotApp(self.settings, self.settings.redis_url, consumer_name="test-bot")
        await self.app.__aenter__()
        self.frontend = DiscordFrontend(self.settings, self.options)  # a fresh client, as a new process has
        self.app.start_delivery({self.frontend.port.platform: self.frontend.port})
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.frontend.run(self.app, self._stop))
        up = asyncio.create_task(self.frontend.up.wait())
        done, _ = await asyncio.wait({up, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            up.cancel()
            self._task.result()  # raises what stopped the frontend
        assert up in done, "the Discord frontend did not come up in 30 s"

    async def stop(self) -> None:
        self._stop.set()
        await self._task
        await self.app.__aexit__(None, None, None)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def run_worker(self) -> None:
        await run_burst_worker(self.settings, self.pipe)

    async def wait_state(self, user: DcUser, state: SessionState, timeout_s: float = 60) -> None:
        key = f"discord:{user.id}"
        if await reached_state(self.app.store, key, state, timeout_s):
            return
        raise AssertionError(f"{key} never reached {state!r}")


@pytest.fixture
def discord_endpoints() -> Iterator[None]:
    """The frontend points discord.py's class-level endpoints at the stand-in; put Discord's back afterwards."""
    saved = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def standin(discord_endpoints: None) -> AsyncIterator[DiscordStandin]:
    server = DiscordStandin(TOKEN)
    await server.start()
    yield server
    await server.stop()
    assert server.unknown == [], f"the bot called routes the stand-in lacks: {server.unknown}"


@pytest.fixture
def discord_options(standin: DiscordStandin) -> DiscordOptions:
    values: dict[str, Any] = {"api_base": standin.api_base, "gateway_url": standin.gateway_url, "edit_interval_s": 0.3}
    return DiscordOptions(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def discord_bot(settings: Settings, discord_options: DiscordOptions, tiny_pipe: Any,
                      redis: Redis) -> AsyncIterator[DiscordBot]:  # fmt: skip
    running = DiscordBot(settings.model_copy(update={"discord_token": SecretStr(TOKEN)}), discord_options, tiny_pipe)
    await running.start()
    yield running
    await running.stop()
