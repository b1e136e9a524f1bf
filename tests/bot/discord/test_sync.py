"""Slash commands are published only when they changed, and a refused publish never ends the frontend."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.discord import DiscordOptions
from bot.discord.sync import STAMP_FILE
from jobs.settings import Settings
from tests.bot.discord.conftest import ALICE, TOKEN, DiscordBot
from tests.bot.discord.standin import DiscordStandin


def _puts(standin: DiscordStandin) -> list[int]:
    return [call.status for call in standin.called("PUT", "/commands")]


async def test_a_restart_with_unchanged_commands_publishes_nothing(
    discord_bot: DiscordBot, standin: DiscordStandin
) -> None:
    await standin.wait_for(lambda: _puts(standin), timeout_s=10, what="the first sync")
    assert _puts(standin) == [200]

    # 1. The same commands: nothing is sent, and the bot serves as before.
    await discord_bot.restart()
    await standin.send_dm(ALICE, "/help")
    await standin.wait_for(lambda: standin.with_text(ALICE, "/headshot <style>"), timeout_s=10, what="the help")
    assert _puts(standin) == [200]

    # 2. Discord last got other commands (an older release): the next start publishes these.
    stamp = discord_bot.settings.data_dir / STAMP_FILE
    stamp.write_text(json.dumps({key: "0" * 64 for key in json.loads(stamp.read_text())}))
    await discord_bot.restart()
    await standin.wait_for(lambda: len(_puts(standin)) == 2, timeout_s=10, what="the sync of changed commands")
    assert _puts(standin) == [200, 200]


@pytest.mark.parametrize("refusal", ["user install off (400)", "rate limited (429, every retry)"])
async def test_a_refused_sync_is_logged_the_bot_serves_dms_and_the_next_start_tries_again(
    refusal: str,
    settings: Settings,
    discord_options: DiscordOptions,
    tiny_model: Any,
    standin: DiscordStandin,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if refusal.startswith("user install"):
        standin.user_install = False  # the developer portal's switch, as on a fresh application
    else:
        for _ in range(5):  # discord.py waits out and retries a 429 five times, then gives up
            standin.fail_next("PUT", "/commands", retry_after=0.05)
    bot = DiscordBot(settings.model_copy(update={"discord_token": SecretStr(TOKEN)}), discord_options, tiny_model)
    await bot.start()
    try:
        # 1. The sync is refused; DMs are answered all the same.
        await standin.send_dm(ALICE, "/help")
        await standin.wait_for(lambda: standin.with_text(ALICE, "/headshot <style>"), timeout_s=10, what="the help")
        await standin.wait_for(lambda: "publishing the slash commands failed" in caplog.text, timeout_s=10)
        assert 200 not in _puts(standin) and standin.commands == []
        assert not (bot.settings.data_dir / STAMP_FILE).exists()

        # 2. Fixed (User Install on, the limit passed): the next start publishes them.
        standin.user_install = True
        await bot.restart()
        await standin.wait_for(lambda: 200 in _puts(standin), timeout_s=10, what="the sync after the refusal")
        assert {command["name"] for command in standin.commands} >= {"train", "headshot"}
    finally:
        await bot.stop()
