"""Reactions: on a headshot, a favorite of exactly that image; on anything else, nothing at all.

The worker is stood in by its events (as in test_delivery_faults): the headshots are real PNGs in the bot's storage,
announced as the worker announces them, so this runs in seconds.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from redis.asyncio import Redis

from bot.core.session import SessionState
from bot.telegram import TelegramOptions
from jobs.contract.events import ImagesReady, RenderedImage, Started, Trained
from jobs.contract.keys import lora_key, output_prefix
from jobs.contract.kinds import JobKind
from jobs.settings import Settings
from tests.bot.telegram.conftest import ALICE
from tests.bot.telegram.standin import BotApiStandin, Sent
from tests.bot.telegram.steps import publish, queue_training, running_bot, with_text

USER_KEY = f"telegram:{ALICE.id}"


def _png(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (shade, shade, shade)).save(out, format="PNG")
    return out.getvalue()


def _headshots(standin: BotApiStandin) -> list[Sent]:
    return [sent for sent in standin.messages(ALICE.id) if sent.kind == "photo"]


async def test_a_reaction_names_the_one_headshot_it_is_on_and_elsewhere_says_nothing(
    settings: Settings,
    telegram_options: TelegramOptions,
    tiny_model: Any,
    standin: BotApiStandin,
    redis: Redis,
    enough_selfies: list[bytes],
) -> None:
    async with running_bot(settings, telegram_options, tiny_model) as bot:
        # 1. A trained model, then two headshots, each posted as a photo of its own.
        train_job = await queue_training(bot, standin, ALICE, enough_selfies)
        await publish(redis, settings, Trained(user_key=USER_KEY, job_id=train_job, lora_key=lora_key(USER_KEY, 1)))
        await bot.wait_state(ALICE, SessionState.READY, timeout_s=10)
        await standin.send_text(ALICE, "/headshot linkedin")
        await standin.wait_for(lambda: with_text(standin, ALICE, "Rendering 2"), what="the render ack")
        render = await bot.app.store.active_job(USER_KEY)
        assert render is not None
        prefix = output_prefix(USER_KEY, "reactions")
        images = []
        for number in (1, 2):
            await bot.app.core.storage.put(f"{prefix}{number}.png", _png(40 * number))
            images.append(RenderedImage(key=f"{prefix}{number}.png", seed=number))
        await publish(
            redis,
            settings,
            Started(user_key=USER_KEY, job_id=render.job_id, kind=JobKind.GENERATE, worker="w"),
            ImagesReady(
                user_key=USER_KEY, job_id=render.job_id, style="linkedin", title="LinkedIn", images=tuple(images)
            ),
        )
        headshots = await standin.wait_for(lambda: len(_headshots(standin)) == 2 and _headshots(standin), what="2")
        before = len(standin.messages(ALICE.id))

        # 2. Reactions on her own selfie album (one lands on its first photo, as in Telegram's apps) and on a text
        # of ours: not favorites, and not worth a reply either.
        hers = [number for number in range(1, before + 10) if (ALICE.id, number) not in standin.sent]
        await standin.react(ALICE, hers[1])  # the album's second photo; the reaction lands on its first
        await standin.react(ALICE, standin.messages(ALICE.id)[0].message_id, "🔥")

        # 3. A reaction on the second headshot keeps headshot #2, not the first.
        await standin.react(ALICE, headshots[1].message_id, "❤")
        saved = await standin.wait_for(lambda: with_text(standin, ALICE, "Saved headshot"), what="the favorite")
        assert "Saved headshot #2 " in saved.text and "(1 in all)" in saved.text
        assert standin.messages(ALICE.id)[before:] == [saved]  # the other reactions got no reply
        favorites = await bot.app.store.favorites(USER_KEY)
        assert [row.storage_key for row in favorites] == [images[1].key]
