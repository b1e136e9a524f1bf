"""A FLUX.2 [klein] deployment in Telegram: previews from the selfies, then the trained model, through real PTB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.telegram import TelegramOptions
from jobs.settings import Settings
from tests.bot.telegram.conftest import ALICE, TOKEN, TelegramBot
from tests.bot.telegram.standin import BotApiStandin, Sent
from tests.harness import KLEIN, with_klein_worker


def _with_text(standin: BotApiStandin, fragment: str) -> Sent | None:
    found = [sent for sent in standin.messages(ALICE.id) if fragment in sent.text]
    return found[-1] if found else None


def _photos(standin: BotApiStandin) -> list[Sent]:
    return [sent for sent in standin.messages(ALICE.id) if sent.kind == "photo"]


@pytest.fixture
async def klein_bot(
    settings: Settings, telegram_options: TelegramOptions, klein_model: Any, redis: Redis
) -> AsyncIterator[TelegramBot]:
    klein = settings.model_copy(update={**KLEIN, "telegram_token": SecretStr(TOKEN)})
    async with with_klein_worker(TelegramBot(klein, telegram_options, klein_model)) as running:
        yield running


async def test_previews_come_while_the_model_trains_and_can_be_kept(
    klein_bot: TelegramBot, standin: BotApiStandin, selfie_dir: Path
) -> None:
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())]
    await standin.send_album(ALICE, photos, caption="/train")
    status = await standin.wait_for(lambda: _with_text(standin, "selfies accepted ("), what="enough selfies")
    await standin.press(ALICE, status, "Start training")

    # 1. The previews arrive before the model: photos of their own, named as previews, with only ★ Keep under them.
    await standin.wait_for(lambda: _with_text(standin, "A first look while your model trains"), what="the previews")
    await standin.wait_for(lambda: len(_photos(standin)) == 2, what="two preview photos")
    previews = _photos(standin)
    assert all(" · Preview · LinkedIn profile · " in sent.text for sent in previews)
    assert previews[0].buttons == {"★ Keep #1": "/favorite 1"}
    await standin.wait_for(lambda: _with_text(standin, "Your model is ready"), what="the trained model")
    texts = standin.texts(ALICE.id)
    assert texts.index("A first look") < texts.index("Your model is ready")

    # 2. A preview is kept like any headshot, and the model's headshots number on after the previews.
    await standin.press(ALICE, previews[0], "★ Keep #1")
    await standin.wait_for(lambda: _with_text(standin, "Saved headshot #1"), what="the favorite")
    await standin.send_text(ALICE, "/headshot studio")
    await standin.wait_for(lambda: len(_photos(standin)) == 4, what="the trained headshots")
    assert [sent.text.split(" · ")[0] for sent in _photos(standin)[2:]] == ["#3", "#4"]
