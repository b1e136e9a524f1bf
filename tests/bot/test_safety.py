"""Refused words in the local chat: a clear reply that says why, and nothing recorded or queued. (The frontends'
stand-ins show the same through Telegram and Discord; the worker's image check is tests/jobs/test_image_safety.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.core import texts
from bot.core.session import SessionState
from bot.store.schema import JobRow
from jobs.contract.keys import lora_key, output_prefix
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import generate_job_id
from jobs.settings import Settings
from pipeline.errors import Reason
from tests.harness import Harness


@pytest.fixture
async def ready(settings: Settings, tmp_path: Path, redis: Redis) -> AsyncIterator[Harness]:
    """The local chat with a trained user who has two headshots, written into the store as delivery leaves them (no
    model: nothing here may reach a worker)."""
    async with Harness(settings, None, tmp_path / "out") as harness:
        store, user = harness.app.store, harness.chat.chat.user_key
        await store.ensure_user(user, "local", user)
        session = await store.new_session(user, SessionState.READY)
        await store.update_session(user, session.id, lora_key=lora_key(user, session.id))
        job_id = generate_job_id(user, f"{session.id}-1")
        await store.add_job(JobRow(job_id, user, session.id, "generate", "done", "linkedin", None))
        for number in (1, 2):
            key = f"{output_prefix(user, f'{session.id}-1')}{number:02d}-seed{number}.png"
            await store.add_image(user, job_id, key, number, f"m{number}")
        yield harness


async def _nothing_queued(harness: Harness) -> None:
    store, user = harness.app.store, harness.chat.chat.user_key
    session = await store.current_session(user)
    assert session is not None and session.state == SessionState.READY
    assert await store.count_jobs(user, session.id, JobKind.GENERATE) == 1  # the seeded one only
    assert await store.active_job(user) is None
    assert await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name) == []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("/headshot n.u.d.e on a beach", Reason.UNSAFE_SEXUAL),
        ("/headshot p0rn", Reason.UNSAFE_SEXUAL),  # one word: refused as such, not echoed back as a style name
        ("/headshot as a 12 year old in class", Reason.UNSAFE_MINOR),
        ("/headshot shaking hands with Dоnald Trump", Reason.UNSAFE_PUBLIC_FIGURE),  # a Cyrillic о
        ("/remix 1 t 0 p l e s s", Reason.UNSAFE_SEXUAL),
        ("/remix 2 as a schoolgirl", Reason.UNSAFE_MINOR),
        ("/remix 2 next to ELON MUSK", Reason.UNSAFE_PUBLIC_FIGURE),
    ],
)
async def test_refused_words_are_answered_and_queue_nothing(ready: Harness, line: str, reason: Reason) -> None:
    answer = await ready.say(line)
    assert answer.endswith(texts.explain(reason)) and "Nothing was queued" in answer
    assert "Rendering" not in answer and "Remixing" not in answer
    words = line.split(" ", 2 if line.startswith("/remix") else 1)[-1]
    assert words not in answer  # the user's words are never echoed
    await _nothing_queued(ready)


async def test_refused_words_get_the_same_answer_before_training(
    settings: Settings, tmp_path: Path, redis: Redis
) -> None:
    async with Harness(settings, None, tmp_path / "out") as harness:
        assert texts.explain(Reason.UNSAFE_SEXUAL) in await harness.say("/headshot nude portrait")
        assert texts.explain(Reason.UNSAFE_MINOR) in await harness.say("/remix 1 as a kid")
        assert await harness.app.pool.queued_jobs(queue_name=settings.queue_name) == []


async def test_innocent_words_and_presets_still_render(ready: Harness) -> None:
    assert "Rendering 2 Custom headshots" in await ready.say("/headshot tweed jacket in the Essex countryside")
    queued = await ready.app.pool.queued_jobs(queue_name=ready.settings.queue_name)
    assert len(queued) == 1 and queued[0].args[0]["style"]["prompt"].endswith("in the Essex countryside")
