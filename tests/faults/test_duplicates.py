"""Duplicate clicks and concurrent commands from one user: one job each, one job in flight, positions shown."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.core.session import SessionState
from bot.local.chat import LocalChat
from tests.harness import Harness


async def _said(harness: Harness, chat: LocalChat, line: str) -> str:
    before = len(harness.lines)
    await chat.say(line)
    return "\n".join(harness.lines[before:])


async def test_concurrent_clicks_enqueue_one_job_each_and_show_positions(harness: Harness, selfie_dir: Path) -> None:
    harness.start_delivery()
    bob = LocalChat(harness.app.service, harness.port, user="bob")
    await harness.say(f"/train {selfie_dir}")
    await _said(harness, bob, f"/train {selfie_dir}")

    # 1. Three taps on "Start training" at once: one job, one "queued", the others told it is already training.
    await asyncio.gather(*(harness.chat.say("/train start") for _ in range(3)))
    chat = "\n".join(harness.lines)
    assert chat.count("Training queued (position 1)") == 1 and chat.count("already training") == 2
    # 2. The second user waits behind the first and is told so.
    assert "Training queued (position 2)" in await _said(harness, bob, "/train start")
    queued = await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name)
    assert sorted(job.job_id for job in queued) == ["train:local:alice:1:0", "train:local:bob:2:0"]
    # 3. While training, a /headshot is refused: one job in flight per user.
    assert "still training" in await harness.say("/headshot linkedin")

    await harness.run_worker()
    await harness.wait_state(SessionState.READY)

    # 4. Three /headshot at once: one rendering job, the others told to wait or cancel.
    before = len(harness.lines)
    await asyncio.gather(*(harness.chat.say(f"/headshot {style}") for style in ("linkedin", "studio", "linkedin")))
    answers = "\n".join(harness.lines[before:])
    assert answers.count("Rendering 2") == 1 and answers.count("still rendering") == 2
    queued = await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name)
    assert [job.function for job in queued] == ["generate_headshots"]
    await harness.run_worker()
    await harness.wait_state(SessionState.READY)
    assert len(harness.port.headshots) == 2
