"""Refused words through real discord.py against the Discord stand-in: ``/headshot``'s description and ``/remix``'s
words are answered with why, and nothing is queued."""

from __future__ import annotations

from pydantic import SecretStr
from redis.asyncio import Redis

from bot.core import texts
from bot.core.session import SessionState
from bot.discord import DiscordOptions
from jobs.contract.keys import lora_key
from jobs.contract.kinds import JobKind
from jobs.settings import Settings
from pipeline.errors import Reason
from tests.bot.discord.conftest import ALICE, TOKEN, DiscordBot
from tests.bot.discord.standin import DiscordStandin

USER_KEY = f"discord:{ALICE.id}"


async def test_a_disguised_description_and_remix_are_refused_and_nothing_is_queued(
    settings: Settings, discord_options: DiscordOptions, standin: DiscordStandin, redis: Redis
) -> None:
    # No model: nothing here may reach a worker.
    bot = DiscordBot(settings.model_copy(update={"discord_token": SecretStr(TOKEN)}), discord_options, None)
    await bot.start()
    try:
        # 1. Alice has a trained model and one headshot, as delivery leaves them.
        store = bot.app.store
        await store.ensure_user(USER_KEY, "discord", str(ALICE.dm))
        session = await store.new_session(USER_KEY, SessionState.READY)
        await store.update_session(USER_KEY, session.id, lora_key=lora_key(USER_KEY, session.id))
        await store.add_image(USER_KEY, "generate:x", f"users/{USER_KEY}/out/1/00-seed1.png", 1, "m1")

        # 2. A minor in look-alike letters in the description option; sexual words dotted apart in a remix.
        await standin.command(ALICE, "headshot", {"description": "as а tееnаger at prom"})  # Cyrillic а and е
        refusal = texts.explain(Reason.UNSAFE_MINOR)
        await standin.wait_for(lambda: standin.with_text(ALICE, refusal), what="the minor refusal")
        await standin.command(ALICE, "remix", {"number": 1, "words": "t.o.p.l.e.s.s on a yacht"})
        refusal = texts.explain(Reason.UNSAFE_SEXUAL)
        await standin.wait_for(lambda: standin.with_text(ALICE, refusal), what="the sexual-content refusal")

        # 3. Nothing recorded, nothing queued, the session still ready.
        assert await store.count_jobs(USER_KEY, session.id, JobKind.GENERATE) == 0
        assert await bot.app.pool.queued_jobs(queue_name=settings.queue_name) == []
        after = await store.current_session(USER_KEY)
        assert after is not None and after.state == SessionState.READY
    finally:
        await bot.stop()
