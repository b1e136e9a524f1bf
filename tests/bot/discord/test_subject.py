"""/train's Discord options describe the user as the words after /train do on every frontend."""

from __future__ import annotations

from pipeline.subject import Subject
from tests.bot.discord.conftest import ALICE, DiscordBot
from tests.bot.discord.standin import DiscordStandin


async def test_train_options_describe_the_user(discord_bot: DiscordBot, standin: DiscordStandin) -> None:
    await standin.command(ALICE, "train", {"describe_as": "woman", "age": "30s", "glasses": True})
    described = "I'll describe you as a woman in her thirties wearing glasses."
    await standin.wait_for(lambda: standin.with_text(ALICE, described), what="the description")
    session = await discord_bot.app.store.current_session(f"discord:{ALICE.id}")
    assert session is not None and session.subject == Subject("woman", "30s", True)

    await standin.command(ALICE, "train", {"glasses": False})
    await standin.wait_for(
        lambda: standin.with_text(ALICE, "I'll describe you as a woman in her thirties."), what="glasses off"
    )
