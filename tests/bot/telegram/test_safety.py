"""Refused words through real PTB against the Bot API stand-in: the user reads why, and nothing is queued."""

from __future__ import annotations

from redis.asyncio import Redis

from bot.core import texts
from bot.core.session import SessionState
from bot.telegram import TelegramOptions
from jobs.contract.keys import lora_key
from jobs.contract.kinds import JobKind
from jobs.settings import Settings
from pipeline.errors import Reason
from tests.bot.telegram.conftest import ALICE
from tests.bot.telegram.standin import BotApiStandin
from tests.bot.telegram.steps import running_bot, with_text

USER_KEY = f"telegram:{ALICE.id}"


async def test_a_disguised_free_text_style_and_remix_are_refused_and_nothing_is_queued(
    settings: Settings, telegram_options: TelegramOptions, standin: BotApiStandin, redis: Redis
) -> None:
    # No model: nothing here may reach a worker.
    async with running_bot(settings, telegram_options, None) as bot:
        # 1. Alice has a trained model and one headshot, as delivery leaves them.
        store = bot.app.store
        await store.ensure_user(USER_KEY, "telegram", str(ALICE.id))
        session = await store.new_session(USER_KEY, SessionState.READY)
        await store.update_session(USER_KEY, session.id, lora_key=lora_key(USER_KEY, session.id))
        await store.add_image(USER_KEY, "generate:x", f"users/{USER_KEY}/out/1/00-seed1.png", 1, "m1")

        # 2. Spaced-out leetspeak in a free-text style, then a public figure in a remix: each refused, with why.
        await standin.send_text(ALICE, "/headshot in $ e x y lingerie")
        refusal = texts.explain(Reason.UNSAFE_SEXUAL)
        await standin.wait_for(lambda: with_text(standin, ALICE, refusal), what="the sexual-content refusal")
        await standin.send_text(ALICE, "/remix 1 hugging Taylor Swift")
        refusal = texts.explain(Reason.UNSAFE_PUBLIC_FIGURE)
        await standin.wait_for(lambda: with_text(standin, ALICE, refusal), what="the public-figure refusal")

        # 3. Nothing recorded, nothing queued, the session still ready; the words were not echoed.
        assert await store.count_jobs(USER_KEY, session.id, JobKind.GENERATE) == 0
        assert await bot.app.pool.queued_jobs(queue_name=settings.queue_name) == []
        after = await store.current_session(USER_KEY)
        assert after is not None and after.state == SessionState.READY
        said = "\n".join(sent.text for sent in standin.messages(ALICE.id))
        assert "lingerie" not in said and "Swift" not in said
