"""What happens to an update as it arrives, before it waits for the same user's earlier ones: a button press is
answered at once, and a flood is dropped there, before anything is downloaded or anyone else's updates wait."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from bot.core import texts as core_texts
from bot.telegram import TelegramOptions
from bot.telegram import texts as telegram_texts
from jobs.settings import Settings
from tests.bot.telegram.conftest import ALICE, TelegramBot
from tests.bot.telegram.standin import BotApiStandin
from tests.bot.telegram.steps import running_bot, with_text

SETTLE_S = 0.5  # after the last expected reply: long enough for any unexpected one to show up


def _count(standin: BotApiStandin, text: str) -> int:
    return sum(sent.text == text for sent in standin.messages(ALICE.id))


async def test_a_press_is_answered_at_once_while_the_same_users_upload_is_still_being_handled(
    telegram_bot: TelegramBot, standin: BotApiStandin
) -> None:
    await standin.send_text(ALICE, "/delete")
    confirm = await standin.wait_for(lambda: with_text(standin, ALICE, "Are you sure?"), what="the confirmation")

    # 1. A document whose download takes 2 s holds Alice's turn; she presses a button meanwhile.
    standin.slow("getFile", 2.0)
    await standin.send_document(ALICE, b"not really a jpeg", "IMG_0001.jpg", "image/jpeg")
    download = await standin.wait_for(lambda: next(iter(standin.called("getFile")), None), what="the download")
    await standin.press(ALICE, confirm, "Keep my data")

    # 2. The spinner stops while the download still runs; the press's command still waits its turn.
    answer = await standin.wait_for(lambda: next(iter(standin.called("answerCallbackQuery")), None), what="answer")
    assert download.answered_at is None, "the press was answered only after the download"
    status = await standin.wait_for(lambda: with_text(standin, ALICE, "Session:"), what="the /status of the press")
    verdict = with_text(standin, ALICE, "✗ IMG_0001.jpg")
    assert verdict is not None and verdict.message_id < status.message_id
    assert download.answered_at is not None and answer.at < download.answered_at


async def test_a_flood_of_documents_is_cut_to_the_burst_before_any_download(
    settings: Settings, telegram_options: TelegramOptions, tiny_model: Any, standin: BotApiStandin, redis: Redis
) -> None:
    async with running_bot(settings, telegram_options, tiny_model, rate_limit_burst=5, rate_limit_per_s=0.1):
        for index in range(20):
            await standin.send_document(ALICE, b"not really a jpeg", f"IMG_{index:04d}.jpg", "image/jpeg")

        # The first five are read and answered; the other fifteen get one "slow down" and are never fetched.
        await standin.wait_for(lambda: with_text(standin, ALICE, "IMG_0004.jpg"), what="the fifth verdict")
        await asyncio.sleep(SETTLE_S)
        assert len(standin.called("getFile")) == 5
        assert _count(standin, core_texts.SLOW_DOWN) == 1
        assert with_text(standin, ALICE, "IMG_0005.jpg") is None


async def test_stickers_count_against_the_flood_limit(
    settings: Settings, telegram_options: TelegramOptions, tiny_model: Any, standin: BotApiStandin, redis: Redis
) -> None:
    async with running_bot(settings, telegram_options, tiny_model, rate_limit_burst=5, rate_limit_per_s=0.1):
        for _ in range(40):
            await standin.send_sticker(ALICE)

        await standin.wait_for(
            lambda: _count(standin, telegram_texts.NOT_A_PHOTO_MESSAGE) >= 5 and _count(standin, core_texts.SLOW_DOWN),
            what="five answers and one slow-down",
        )
        await asyncio.sleep(SETTLE_S)
        assert len(standin.messages(ALICE.id)) == 6


async def test_one_user_cannot_line_up_more_than_max_queued_updates(
    settings: Settings, telegram_options: TelegramOptions, tiny_model: Any, standin: BotApiStandin, redis: Redis
) -> None:
    # Rate limiting off: the line itself is under test. Each waiting update would hold one of PTB's slots.
    options = telegram_options.model_copy(update={"max_queued_updates": 3})
    async with running_bot(settings, options, tiny_model, rate_limit_burst=0):
        standin.slow("getFile", 1.0)
        await standin.send_document(ALICE, b"not really a jpeg", "IMG_0001.jpg", "image/jpeg")
        await standin.wait_for(lambda: standin.called("getFile"), what="the slow download")
        for _ in range(10):
            await standin.send_text(ALICE, "/help")

        # Three wait their turn and are answered; the seven after them are dropped, with one "slow down".
        await standin.wait_for(lambda: _count(standin, core_texts.HELP) >= 3, what="three answers")
        await asyncio.sleep(SETTLE_S)
        assert _count(standin, core_texts.HELP) == 3
        assert _count(standin, core_texts.SLOW_DOWN) == 1
