"""Exactly once per image: a failure at headshot k of n re-posts none of the first k-1 (real PTB, stand-in, Redis)."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

from PIL import Image
from redis.asyncio import Redis

from bot.core.session import JobStatus, SessionState
from bot.telegram import TelegramOptions
from jobs.contract.events import ImagesReady, RenderedImage
from jobs.contract.keys import lora_key, output_prefix
from jobs.contract.stream import BOT_GROUP, EventPublisher
from jobs.settings import Settings
from tests.bot.telegram.conftest import ALICE
from tests.bot.telegram.standin import BotApiStandin
from tests.bot.telegram.steps import running_bot

USER = f"telegram:{ALICE.id}"


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 80), (shade, 90, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_a_failure_at_image_two_of_three_reposts_neither_image_one_nor_the_final_text(
    settings: Settings, telegram_options: TelegramOptions, tiny_model: Any, standin: BotApiStandin, redis: Redis
) -> None:
    async with running_bot(settings, telegram_options, tiny_model, delivery_retry_s=0.3) as bot:
        # A user with a trained model asks for headshots; no worker runs, its result is published below.
        store = bot.app.store
        await store.ensure_user(USER, "telegram", str(ALICE.id))
        session = await store.new_session(USER, SessionState.READY)
        await store.update_session(USER, session.id, lora_key=lora_key(USER, session.id))
        await standin.send_text(ALICE, "/headshot linkedin")
        await standin.wait_for(lambda: "Rendering" in standin.texts(ALICE.id), what="the render ack")
        job = await store.active_job(USER)
        assert job is not None
        images = []
        for number in (1, 2, 3):
            key = f"{output_prefix(USER, f'{session.id}-1')}{number:02d}-seed{number}.png"
            await bot.app.core.storage.put(key, _png(number * 60))
            images.append(RenderedImage(key=key, seed=number))

        # 1. Telegram takes headshot #1, then answers #2 with 502 Bad Gateway (worth another try).
        standin.fail_call("sendPhoto", after=1, code=502, description="Bad Gateway")
        event = ImagesReady(user_key=USER, job_id=job.job_id, style="linkedin", title="LinkedIn", images=tuple(images))
        await EventPublisher(redis, settings.events_stream).publish(event)

        # 2. The retry posts #2 and #3 only: each headshot once, in order, each recorded with its message.
        await standin.wait_for(lambda: len(_photos(standin)) == 3, timeout_s=10, what="three headshots")
        await asyncio.sleep(0.5)  # a wrong second try would post again within this
        photos = _photos(standin)
        assert [sent.text.split(" · ")[0] for sent in photos] == ["#1", "#2", "#3"]
        assert [call.status for call in standin.calls if call.method == "sendPhoto"] == [200, 502, 200, 200]
        rows = await store.images(USER)
        assert [row.message_id for row in rows] == [str(sent.message_id) for sent in photos]
        assert standin.texts(ALICE.id).count("Here are your LinkedIn headshots") == 1
        finished = await store.job(USER, job.job_id)
        assert finished is not None and finished.status == JobStatus.DONE
        deadline = time.monotonic() + 5
        while (await redis.xpending(settings.events_stream, BOT_GROUP))["pending"]:
            assert time.monotonic() < deadline, "the event was never acked"
            await asyncio.sleep(0.05)


def _photos(standin: BotApiStandin) -> list[Any]:
    return [sent for sent in standin.messages(ALICE.id) if sent.kind == "photo"]
