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

from bot.discord import DiscordFrontend, DiscordOptions
from jobs.settings import Settings
from tests.bot.discord.standin import DcUser, DiscordStandin
from tests.harness import RestartableBot

TOKEN = "MTIzNDU2.test.secret-discord-token"
ALICE = DcUser(2001, "Alice")
BOB = DcUser(2002, "Bob")


class DiscordBot(RestartableBot):
    """The bot process as ``headshot-bot`` runs it (BotApp, Discord frontend, delivery); restartable."""

    frontend: DiscordFrontend

    def __init__(self, settings: Settings, options: DiscordOptions, model: Any) -> None:
        super().__init__(settings, model)
        self.options = options

    def make_frontend(self) -> DiscordFrontend:
        return DiscordFrontend(self.settings, self.options)

    def frontend_up(self) -> asyncio.Event:
        return self.frontend.up

    async def stop(self) -> None:
        # In headshot-bot's order (bot.main.serve): receiving first, then delivery, then the clients.
        await self.frontend.stop_receiving()
        await self.app.stop_delivery()
        await super().stop()


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
async def discord_bot(
    settings: Settings, discord_options: DiscordOptions, tiny_model: Any, redis: Redis
) -> AsyncIterator[DiscordBot]:
    running = DiscordBot(settings.model_copy(update={"discord_token": SecretStr(TOKEN)}), discord_options, tiny_model)
    await running.start()
    yield running
    await running.stop()
