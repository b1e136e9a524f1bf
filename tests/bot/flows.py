"""Whole-product flows shared by the privacy tests: several users train, render and keep a favorite, for real."""

from __future__ import annotations

from pathlib import Path

from bot.core.session import SessionState
from bot.local.chat import LocalChat
from tests.harness import Harness, reached_state

__all__ = ["full_flow", "say_as"]


async def say_as(harness: Harness, speaker: LocalChat, line: str) -> str:
    """What the bot answered ``speaker`` (they share the harness's port, so message numbers are unique)."""
    start = len(harness.lines)
    await speaker.say(line)
    return "\n".join(harness.lines[start:])


async def _wait_ready(harness: Harness, speakers: list[LocalChat]) -> None:
    for speaker in speakers:
        key = speaker.chat.user_key
        assert await reached_state(harness.app.store, key, SessionState.READY, 60), f"{key} never got READY"


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
