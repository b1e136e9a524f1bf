"""Events from the worker reach the chat exactly once, across bot crashes and restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.core.session import SessionState
from jobs.contract.events import EventType, Progress
from jobs.contract.stream import BOT_GROUP, EventConsumer, EventPublisher
from jobs.settings import Settings
from tests.harness import Harness


async def _trained_and_requested(settings: Settings, model: Any, out: Path, selfie_dir: Path) -> None:
    """A bot that trains the user's model, then takes a /headshot request and goes down before the render."""
    async with Harness(settings, model, out, consumer_name="bot-a") as bot:
        bot.start_delivery()
        await bot.say(f"/train {selfie_dir}")
        await bot.say("/train start")
        await bot.run_worker()
        await bot.wait_state(SessionState.READY)
        assert "Rendering" in await bot.say("/headshot studio")
    # The worker renders while no bot delivers: its events wait in the stream.
    async with Harness(settings, model, out) as worker_only:
        await worker_only.run_worker()


async def test_restart_between_images_ready_and_posting_delivers_exactly_once(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    out = tmp_path / "out"
    await _trained_and_requested(settings, tiny_model, out, selfie_dir)

    # 1. A bot reads the images-ready event and dies before posting it (no delivery, no ack).
    async with Harness(settings, tiny_model, out, consumer_name="bot-a") as crashed:
        consumer = EventConsumer(crashed.app.pool, settings.events_stream, "bot-a")
        await consumer.ensure_group()
        read = await consumer.read(block_ms=100, count=100)
        assert EventType.IMAGES_READY in [event.type for event in read]
    assert (await redis.xpending(settings.events_stream, BOT_GROUP))["pending"] >= 1

    # 2. The restarted bot posts the headshots, once, and acks.
    async with Harness(settings, tiny_model, out, consumer_name="bot-a") as restarted:
        restarted.start_delivery()
        await restarted.wait_state(SessionState.READY)
        assert len(restarted.port.headshots) == 2
        assert len(await restarted.app.store.images(restarted.chat.chat.user_key)) == 2
        assert (await redis.xpending(settings.events_stream, BOT_GROUP))["pending"] == 0

    # 3. Yet another restart posts nothing again.
    async with Harness(settings, tiny_model, out, consumer_name="bot-a") as again:
        again.start_delivery()
        await asyncio.sleep(1.0)
        assert again.port.headshots == []
        assert len(await again.app.store.images(again.chat.chat.user_key)) == 2


async def test_event_posted_but_not_acked_is_not_posted_twice(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    out = tmp_path / "out"
    await _trained_and_requested(settings, tiny_model, out, selfie_dir)
    async with Harness(settings, tiny_model, out, consumer_name="bot-a") as bot:
        consumer = EventConsumer(bot.app.pool, settings.events_stream, "bot-a")
        await consumer.ensure_group()
        from bot.core.delivery import EventDelivery

        delivery = EventDelivery(bot.app.core, {"local": bot.port})
        for event in await consumer.read(block_ms=100, count=100):
            assert await delivery.deliver(event)  # posted... and the bot dies before the ack
        assert len(bot.port.headshots) == 2

    async with Harness(settings, tiny_model, out, consumer_name="bot-a") as restarted:
        restarted.start_delivery()
        await asyncio.sleep(1.0)
        assert restarted.port.headshots == []
        assert (await redis.xpending(settings.events_stream, BOT_GROUP))["pending"] == 0


async def test_events_of_another_bots_dead_consumer_are_claimed(redis: Redis, settings: Settings) -> None:
    stream = settings.events_stream
    publisher = EventPublisher(redis, stream)
    dead = EventConsumer(redis, stream, "bot-dead")
    await dead.ensure_group()
    await publisher.publish(Progress(user_key="local:zoe", job_id="train:local:zoe:1:0", done=1, total=2))
    assert len(await dead.read(block_ms=100)) == 1  # read, never acked: bot-dead died

    survivor = EventConsumer(redis, stream, "bot-survivor", claim_idle_ms=0)
    claimed = await survivor.read(block_ms=100)
    assert [event.user_key for event in claimed] == ["local:zoe"]
    await survivor.ack(claimed[0])
    assert (await redis.xpending(stream, BOT_GROUP))["pending"] == 0


async def test_events_for_a_platform_without_frontend_stay_pending(harness: Harness, redis: Redis) -> None:
    from bot.core.delivery import EventDelivery

    delivery = EventDelivery(harness.app.core, {"local": harness.port})
    event = Progress(user_key="telegram:42", job_id="train:telegram:42:1:0", done=1, total=2, event_id="1-0")
    assert await delivery.deliver(event) is False
