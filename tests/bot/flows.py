"""Whole-product flows shared by the privacy tests: several users train, render and keep a favorite, for real."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from bot.app import BotApp
from bot.core.session import SessionState
from bot.core.types import OutgoingImage
from bot.local.chat import LocalChat
from bot.store.schema import JobRow
from jobs.contract.keys import lora_key, output_prefix
from jobs.contract.payloads import GenerateRequest, generate_job_id
from tests.harness import Harness, reached_state

__all__ = ["full_flow", "queued_request", "say_as", "seed_ready"]


async def say_as(harness: Harness, speaker: LocalChat, line: str) -> str:
    """What the bot answered ``speaker`` (they share the harness's port, so message numbers are unique)."""
    start = len(harness.lines)
    await speaker.say(line)
    return "\n".join(harness.lines[start:])


async def queued_request(app: BotApp) -> GenerateRequest:
    """The one generation job waiting in the queue, as the worker will read it."""
    queued = await app.pool.queued_jobs(queue_name=app.settings.queue_name)
    assert len(queued) == 1, queued
    return GenerateRequest.from_dict(queued[0].args[0])


async def _wait_ready(harness: Harness, speakers: list[LocalChat]) -> None:
    for speaker in speakers:
        key = speaker.chat.user_key
        assert await reached_state(harness.app.core, key, SessionState.READY, 60), f"{key} never got READY"


async def full_flow(harness: Harness, speakers: dict[str, Path]) -> dict[str, list[str]]:
    """Each speaker (by user name) trains on a folder, renders linkedin headshots and favorites the first one.

    Returns each user's headshot message ids. Delivery must be running.
    """
    chats = {user: LocalChat(harness.app.service, harness.port, user) for user in speakers}
    for user, folder in speakers.items():
        assert "selfies accepted" in await say_as(harness, chats[user], f"/train {folder}")
        assert "Training queued" in await say_as(harness, chats[user], "/train start")
    await harness.run_worker()
    await _wait_ready(harness, list(chats.values()))
    for user in speakers:
        assert "Rendering" in await say_as(harness, chats[user], "/headshot linkedin")
    await harness.run_worker()
    await _wait_ready(harness, list(chats.values()))
    messages: dict[str, list[str]] = {}
    for user, chat in chats.items():
        rows = await harness.app.store.images(chat.chat.user_key)
        messages[user] = [str(row.message_id) for row in rows]
        assert "favorites (1 in all)" in await say_as(harness, chat, f"react {messages[user][0]}")
    return messages


async def seed_ready(harness: Harness, selfie_dir: Path) -> None:
    """The harness's user as delivery leaves them after training and one render: READY, two headshots, a favorite.

    Written straight into the store and storage (no worker), for tests of what comes after.
    """
    selfies = sorted(selfie_dir.iterdir())
    # A trained session with two delivered headshots, one of them a favorite, as delivery leaves it.
    await harness.say("/train " + " ".join(str(path) for path in selfies[:3]))
    store, user, port = harness.app.store, harness.chat.chat.user_key, harness.port
    session = await store.current_session(user)
    assert session is not None
    await store.update_session(user, session.id, state=SessionState.READY, lora_key=lora_key(user, session.id))
    job_id = generate_job_id(user, f"{session.id}-1")
    await store.add_job(JobRow(job_id, user, session.id, "generate", "done", "linkedin", None))
    for number in (1, 2):
        key = f"{output_prefix(user, f'{session.id}-1')}{number:02d}-seed{number}.png"
        buffer = io.BytesIO()
        Image.new("RGB", (64, 80), (number * 60, 90, 120)).save(buffer, format="PNG")
        await harness.app.core.storage.put(key, buffer.getvalue())
        message_id = await port.send_image(user, OutgoingImage(key.rsplit("/", 1)[-1], buffer.getvalue()))
        await store.add_image(user, job_id, key, number, message_id)
    await harness.say(f"react {message_id}")
    assert len(await store.favorites(user)) == 1
