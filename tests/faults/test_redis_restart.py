"""Redis restarted mid-queue (same port, same append-only data): bot and worker carry on by themselves.

One user's training runs and another's waits in the queue when Redis goes down; both get their model after it
comes back, each told once, with no command from anyone. Messages sent while Redis is away get an honest reply.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.core.session import SessionState
from bot.local.chat import LocalChat
from jobs.ops.redis_server import EmbeddedRedis
from jobs.settings import Settings
from tests.faults.processes import WorkerProcess
from tests.harness import Harness, reached_state


async def test_redis_restart_mid_queue_loses_nothing(
    settings: Settings, tiny_model: Any, tmp_path: Path, selfie_dir: Path
) -> None:
    server = EmbeddedRedis(data_dir=tmp_path / "redis")  # our own server: this test stops it
    server.start()
    settings = settings.model_copy(update={"redis_url": server.url, "train_steps": 40})
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        async with Harness(settings, tiny_model, tmp_path / "out") as harness:
            harness.start_delivery()
            bob = LocalChat(harness.app.service, harness.port, user="bob")
            await harness.say(f"/train {selfie_dir}")
            await bob.say(f"/train {selfie_dir}")
            await worker.start()
            await harness.say("/train start")
            await bob.say("/train start")
            while not any("% (step" in line for line in harness.lines):  # alice's training is running
                await asyncio.sleep(0.05)

            # 1. Redis goes away; a user who writes meanwhile is answered, not ignored. Bob asks: his training waits
            #    behind alice's (or has just begun), so his answer needs the queue. Alice's 40 steps may already be
            #    done on a fast machine (they were, once: her /status then needs no Redis and says "ready").
            server.stop()
            before = len(harness.lines)
            await bob.say("/status")
            answer = "\n".join(harness.lines[before:])
            assert "went wrong on our side" in answer
            await asyncio.sleep(1.0)

            # 2. It comes back on the same port with its append-only file; nobody reconnects anything by hand.
            server.start()
            for user in ("local:alice", "local:bob"):
                assert await reached_state(harness.app.core, user, SessionState.READY, timeout_s=120), (
                    f"{user} never got a model; chat:\n" + "\n".join(harness.lines) + "\nworker:\n" + worker.log()
                )
            assert worker.alive()
            chat = "\n".join(harness.lines)
            assert chat.count("Your model is ready") == 2
            assert "ready" in await harness.say("/status")
    finally:
        worker.stop()
        server.stop()
