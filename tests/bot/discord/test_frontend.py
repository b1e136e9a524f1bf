"""The Discord frontend's shape: commands published for DMs and user installs, DM intents, refusals in servers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from bot.discord import DiscordFrontend, DiscordOptions
from bot.main import FRONTENDS
from jobs.settings import Settings
from tests.bot.discord.conftest import ALICE, TOKEN, DiscordBot
from tests.bot.discord.standin import DiscordStandin

DM_MESSAGES, DM_REACTIONS, MESSAGE_CONTENT = 1 << 12, 1 << 13, 1 << 15


def test_discord_is_registered_under_its_token_setting_and_needs_it(settings: Settings) -> None:
    spec = next(spec for spec in FRONTENDS if spec.name == "discord")
    assert spec.token_setting == "discord_token"
    with pytest.raises(ValueError, match="DISCORD_TOKEN is not set"):
        DiscordFrontend(settings, DiscordOptions(_env_file=None))  # type: ignore[call-arg]


async def test_start_syncs_commands_for_dms_and_user_installs_with_dm_intents(
    discord_bot: DiscordBot, standin: DiscordStandin
) -> None:
    await standin.wait_for(lambda: standin.commands, timeout_s=10, what="the sync, which runs beside serving")
    commands = {command["name"]: command for command in standin.commands}
    assert set(commands) == {
        "train",
        "headshot",
        "styles",
        "status",
        "cancel",
        "favorites",
        "favorite",
        "export",
        "more",
        "remix",
        "upscale",
        "delete",
        "help",
    }
    assert all(command["contexts"] == [1, 2] for command in commands.values())  # bot DM, other private chats
    assert all(command["integration_types"] == [0, 1] for command in commands.values())  # server and user installs
    photos = [option for option in commands["train"]["options"] if option["type"] == 11]
    assert len(photos) == 10
    train = {option["name"]: option for option in commands["train"]["options"]}
    assert {choice["value"] for choice in train["describe_as"]["choices"]} == {"woman", "man", "person"}
    options = {option["name"]: option for option in commands["headshot"]["options"]}
    assert {"linkedin", "studio"} <= {choice["value"] for choice in options["style"]["choices"]}
    assert options["description"]["type"] == 3 and not options["description"].get("required")  # free text, optional
    intents = standin.identified[-1]["intents"]
    assert intents & DM_MESSAGES and intents & DM_REACTIONS and not intents & MESSAGE_CONTENT


async def test_help_command_is_deferred_then_answered_in_the_dm(
    discord_bot: DiscordBot, standin: DiscordStandin
) -> None:
    await standin.command(ALICE, "help")
    await standin.wait_for(lambda: standin.with_text(ALICE, "/headshot <style>"), what="the help text")
    deferred = standin.called("POST", "/callback")[-1]
    assert deferred.body["type"] == 5  # "thinking…", within the 3 s
    await standin.wait_for(lambda: standin.with_text(ALICE, "`/help`"), what="the response echoing the command")


async def test_server_channel_gets_an_ephemeral_refusal_and_nothing_is_stored(
    discord_bot: DiscordBot, standin: DiscordStandin, selfie_dir: Path
) -> None:
    photo = sorted(selfie_dir.iterdir())[0].read_bytes()
    await standin.command(ALICE, "train", files=[("me.jpg", photo, "image/jpeg")], guild_id=42)
    refusal = await standin.wait_for(lambda: standin.ephemeral(ALICE), what="the ephemeral refusal")
    assert "DM me your selfies" in refusal[0].content
    # A server message with a photo (if one ever reached the bot) is not even downloaded.
    await standin.send_dm(ALICE, "/train", [("me.jpg", photo, "image/jpeg")], guild_id=42)
    await standin.command(ALICE, "status")  # a DM command after it: once answered, the server message was handled
    await standin.wait_for(lambda: standin.with_text(ALICE, "Session:"), what="the DM status")
    assert standin.downloads == []
    assert await discord_bot.app.store.current_session(f"discord:{ALICE.id}") is None
    assert "DM me" not in standin.texts(ALICE)


async def test_bad_token_fails_fast_and_is_never_logged(
    settings: Settings, discord_options: DiscordOptions, standin: DiscordStandin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "MTIzNDU2.wrong.not-the-token"
    frontend = DiscordFrontend(settings.model_copy(update={"discord_token": SecretStr(wrong)}), discord_options)
    with pytest.raises(RuntimeError, match="Discord refused DISCORD_TOKEN"):
        await frontend.run(SimpleNamespace(service=None, store=None), asyncio.Event())  # type: ignore[arg-type]
    assert wrong not in caplog.text and TOKEN not in caplog.text
