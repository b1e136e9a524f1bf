"""Slash commands as Discord answers them: the deferred response, DMs the bot may not send, free-text styles."""

from __future__ import annotations

import pytest

from bot.core.session import SessionState
from bot.discord import texts
from jobs.contract.keys import lora_key
from jobs.contract.kinds import JobKind
from tests.bot.discord.conftest import ALICE, DiscordBot
from tests.bot.discord.standin import DiscordStandin
from tests.bot.discord.world import PRIVATE

OPEN_DM = "Open a DM with me first"


@pytest.mark.parametrize("where", ["opening the DM (50007)", "posting in it (50278, no mutual server)"])
async def test_a_user_the_bot_cannot_dm_is_told_in_the_interaction_to_open_a_dm(
    where: str, discord_bot: DiscordBot, standin: DiscordStandin
) -> None:
    if where.startswith("opening"):
        standin.refuse_next("POST", "/users/@me/channels", 403, 50007, "Cannot send messages to this user")
    else:
        standin.block(ALICE, code=50278)
    await standin.command(ALICE, "help", context=PRIVATE)  # a user install, used in a group DM
    answer = await standin.wait_for(
        lambda: [sent for sent in standin.ephemeral(ALICE) if OPEN_DM in sent.content], timeout_s=10, what="answer"
    )
    assert len(standin.ephemeral(ALICE)) == 1 and answer[0].content == texts.OPEN_DM_FIRST  # the "thinking…", edited
    assert standin.messages(ALICE) == []
    assert not await discord_bot.app.store.has_left(f"discord:{ALICE.id}")  # opening the DM fixes it


async def test_an_error_after_thinking_replaces_the_loading_message(
    discord_bot: DiscordBot, standin: DiscordStandin
) -> None:
    standin.refuse_next("POST", "/users/@me/channels", 400, 50035, "Invalid Form Body")
    await standin.command(ALICE, "status", context=PRIVATE)
    await standin.wait_for(
        lambda: [sent for sent in standin.ephemeral(ALICE) if sent.content == texts.INTERNAL_ERROR],
        timeout_s=10,
        what="the error in the loading message",
    )
    assert [sent.content for sent in standin.ephemeral(ALICE)] == [texts.INTERNAL_ERROR]
    # Edited as the deferred response (edit_original_response), not left to Discord's followup-becomes-edit rule.
    assert len(standin.called("PATCH", "/messages/@original")) == 1
    assert standin.called("POST", "/webhooks/") == []


async def test_headshot_takes_a_description_in_the_users_own_words(
    discord_bot: DiscordBot, standin: DiscordStandin
) -> None:
    # A trained model, as after /train (the render itself is the flow test's business).
    store, user_key = discord_bot.app.store, f"discord:{ALICE.id}"
    await store.ensure_user(user_key, "discord", str(ALICE.dm))
    session = await store.new_session(user_key, SessionState.READY)
    await store.update_session(user_key, session.id, lora_key=lora_key(user_key, session.id))

    await standin.command(ALICE, "headshot", {"description": "navy suit on a rooftop"})
    await standin.wait_for(lambda: standin.with_text(ALICE, "Rendering 2 Custom headshots"), what="the render ack")
    queued = await discord_bot.app.pool.queued_jobs(queue_name=discord_bot.settings.queue_name)
    assert [job.function for job in queued] == [JobKind.GENERATE.function]
    assert queued[0].args[0]["style"]["prompt"].endswith("navy suit on a rooftop")
    await standin.wait_for(lambda: standin.with_text(ALICE, "`/headshot navy suit on a rooftop`"), what="the echo")
