"""The bot serves its own metrics: the queue it fills and the worker events it delivers, over real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.core.session import SessionState
from jobs.settings import Settings
from tests.harness import Harness
from tests.operations import scrape


async def test_bot_metrics_count_queue_and_delivered_events(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path, unused_tcp_port: int
) -> None:
    settings = settings.model_copy(update={"bot_metrics_port": unused_tcp_port, "train_steps": 2})
    async with Harness(settings, tiny_model, tmp_path / "out") as bot:
        bot.start_delivery()
        # 1. A training request waits in the queue while no worker runs.
        await bot.say(f"/train {selfie_dir}")
        await bot.say("/train start")
        waiting = await scrape(unused_tcp_port)
        assert waiting[("headshot_queue_depth", ())] == 1
        assert waiting[("headshot_live_workers", ())] == 0
        # 2. A worker trains; the bot posts its events to the chat and counts them.
        await bot.run_worker()
        await bot.wait_state(SessionState.READY)
        # The session turns READY just before the event's ack, so give the ack a moment.
        trained = ("headshot_bot_events_delivered_total", (("type", "trained"),))
        for _ in range(50):
            done = await scrape(unused_tcp_port)
            if trained in done and done[("headshot_bot_events_pending", ())] == 0:
                break
            await asyncio.sleep(0.1)
    assert done[("headshot_queue_depth", ())] == 0
    assert done[("headshot_bot_events_delivered_total", (("type", "started"),))] == 1
    assert done[trained] == 1
    assert done[("headshot_bot_events_pending", ())] == 0
