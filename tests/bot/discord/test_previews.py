"""A FLUX.2 [klein] deployment in Discord: previews from the selfies, then the model, through real discord.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.discord import DiscordOptions
from jobs.settings import Settings
from tests.bot.discord.conftest import ALICE, TOKEN, DiscordBot
from tests.bot.discord.standin import DiscordStandin
from tests.harness import KLEIN, with_klein_worker

PNG = b"\x89PNG"


@pytest.fixture
async def klein_bot(
    settings: Settings, discord_options: DiscordOptions, klein_model: Any, redis: Redis
) -> AsyncIterator[DiscordBot]:
    klein = settings.model_copy(update={**KLEIN, "discord_token": SecretStr(TOKEN)})
    async with with_klein_worker(DiscordBot(klein, discord_options, klein_model)) as running:
        yield running


async def test_previews_come_while_the_model_trains_and_can_be_kept(
    klein_bot: DiscordBot, standin: DiscordStandin, selfie_dir: Path
) -> None:
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())]
    files = [(f"selfie{number}.jpg", data, "image/jpeg") for number, data in enumerate(photos, 1)]
    await standin.command(ALICE, "train", files=files)
    status = await standin.wait_for(lambda: standin.with_text(ALICE, "selfies accepted ("), what="enough selfies")
    await standin.press(ALICE, status, "Start training")

    # 1. The previews arrive before the model: a PNG message each, named as a preview, with only ★ Keep under it.
    await standin.wait_for(lambda: standin.with_text(ALICE, "A first look while your model trains"), what="previews")
    await standin.wait_for(lambda: len(standin.images(ALICE)) == 2, what="two preview images")
    previews = standin.images(ALICE)
    assert all(
        sent.files[0][1].startswith(PNG) and " · Preview · LinkedIn profile · " in sent.content for sent in previews
    )
    assert previews[0].buttons == {"★ Keep #1": "hs:/favorite 1"}
    await standin.wait_for(lambda: standin.with_text(ALICE, "Your model is ready"), what="the trained model")

    # 2. A preview is kept like any headshot.
    await standin.press(ALICE, previews[1], "★ Keep #2")
    await standin.wait_for(lambda: standin.with_text(ALICE, "Saved headshot #2"), what="the favorite")
