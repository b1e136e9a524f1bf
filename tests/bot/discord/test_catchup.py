"""Selfies DMed while the bot restarts: Discord drops the events, the bot reads them back from the DM, once."""

from __future__ import annotations

from pathlib import Path

from tests.bot.discord.conftest import ALICE, DiscordBot
from tests.bot.discord.standin import DiscordStandin


def _jpeg(name: str, data: bytes) -> list[tuple[str, bytes, str]]:
    return [(name, data, "image/jpeg")]


async def _down_while_she_sends(bot: DiscordBot, standin: DiscordStandin, name: str, data: bytes) -> None:
    """The bot is down (a deploy) while Alice DMs a selfie: no session is open, so Discord never delivers it."""
    await bot.stop()
    dropped = len(standin.dropped)
    await standin.send_dm(ALICE, "", _jpeg(name, data))
    await standin.wait_for(lambda: len(standin.dropped) == dropped + 1, timeout_s=5, what="the dropped event")
    await bot.start()


async def test_selfies_sent_while_the_bot_was_down_are_counted_once_after_it_restarts(
    discord_bot: DiscordBot, standin: DiscordStandin, selfie_dir: Path
) -> None:
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())]
    user_key = f"discord:{ALICE.id}"

    # 1. Alice starts with /train and one selfie attached, then the bot restarts while she DMs the second.
    await standin.command(ALICE, "train", files=_jpeg("one.jpg", photos[0]))
    await standin.wait_for(lambda: standin.with_text(ALICE, "1 of 3 selfies accepted"), what="the first verdict")
    await _down_while_she_sends(discord_bot, standin, "two.jpg", photos[1])
    second = await standin.wait_for(lambda: standin.with_text(ALICE, "2 of 3 selfies accepted"), what="read back")
    assert "✓ two.jpg: accepted" in second.content

    # 2. A third goes in live; the bot restarts again while she DMs the fourth, which is read back too.
    await standin.send_dm(ALICE, "", _jpeg("three.jpg", photos[2]))
    await standin.wait_for(lambda: standin.with_text(ALICE, "3 selfies accepted ("), what="the live third")
    await _down_while_she_sends(discord_bot, standin, "four.jpg", photos[3])
    await standin.wait_for(lambda: standin.with_text(ALICE, "4 selfies accepted ("), what="the fourth read back")

    # 3. One more restart reads nothing again: four selfies, each fetched and judged once.
    await discord_bot.restart()
    await standin.command(ALICE, "status")
    await standin.wait_for(lambda: standin.with_text(ALICE, "Session: collecting"), what="the status")
    session = await discord_bot.app.store.current_session(user_key)
    assert session is not None and len(await discord_bot.app.store.selfie_keys(user_key, session.id)) == 4
    assert len(standin.downloads) == 4
    assert "Same photo" not in standin.texts(ALICE)
