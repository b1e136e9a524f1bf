"""Album collation: Telegram sends an album as one update per photo sharing a ``media_group_id``, with the caption
on the first only. The parts are gathered until none arrived for ``wait_s`` and then handled as one message.

A slow upload can still split an album into two runs. The caption of its first run is kept for a while, so a
command in it ("/train new") applies to the later photos of the same album too, not only to the first run's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache
from telegram import Message

from bot.core.locks import UserLocks
from bot.core.types import ChatRef

__all__ = ["AlbumCollator", "caption_of"]

CAPTION_KEPT_S = 120.0

AlbumHandler = Callable[[ChatRef, list[Message], str], Awaitable[None]]  # chat, parts in order, the album's caption
Spawn = Callable[[Coroutine[Any, Any, None]], object]


@dataclass
class _Album:
    chat: ChatRef
    parts: list[Message] = field(default_factory=list)
    last: float = 0.0


class AlbumCollator:
    """Holds albums still arriving. ``locks`` are the per-user update locks, so an album is handled in its place
    among the user's other updates; ``flush`` runs from inside a held lock, the timer takes the lock itself."""

    def __init__(self, wait_s: float, handle: AlbumHandler, locks: UserLocks, spawn: Spawn) -> None:
        self.wait_s = wait_s
        self._handle = handle
        self._locks = locks
        self._spawn = spawn
        self._albums: dict[tuple[str, str], _Album] = {}
        # Captions of albums handled lately, for their late parts; bounded in count and time.
        self._captions: TTLCache[tuple[str, str], str] = TTLCache(maxsize=10_000, ttl=CAPTION_KEPT_S)

    def add(self, chat: ChatRef, message: Message) -> None:
        group = message.media_group_id or str(message.message_id)
        key = (chat.user_key, group)
        album = self._albums.get(key)
        if album is None:
            album = self._albums[key] = _Album(chat)
            self._spawn(self._handle_when_complete(key))
        album.parts.append(message)
        album.last = time.monotonic()

    async def flush(self, user_key: str) -> None:
        """Handle the user's albums now: a later message of theirs must not overtake them. Caller holds the lock."""
        for key in [key for key in self._albums if key[0] == user_key]:
            await self._handle_album(key, self._albums.pop(key))

    def drop(self, user_key: str) -> None:
        """Forget the user's albums still arriving, unhandled (the user blocked the bot)."""
        for key in [key for key in self._albums if key[0] == user_key]:
            del self._albums[key]

    async def _handle_when_complete(self, key: tuple[str, str]) -> None:
        while (album := self._albums.get(key)) is not None:
            delay = album.last + self.wait_s - time.monotonic()
            if delay <= 0:
                break
            await asyncio.sleep(delay)
        async with self._locks.hold(key[0]):
            album = self._albums.pop(key, None)  # None when a later message of the user flushed it already
            if album is not None:
                await self._handle_album(key, album)

    async def _handle_album(self, key: tuple[str, str], album: _Album) -> None:
        parts = _in_order(album.parts)
        caption = caption_of(parts) or self._captions.get(key, "")
        if caption and parts[0].media_group_id:
            self._captions[key] = caption
        await self._handle(album.chat, parts, caption)


def caption_of(parts: list[Message]) -> str:
    """The text a message or album says: the first text or caption among its parts."""
    return next((part.text or part.caption or "" for part in parts if part.text or part.caption), "")


def _in_order(parts: list[Message]) -> list[Message]:
    # Updates of one album can be processed out of order when users run in parallel; message ids are not.
    return sorted(parts, key=lambda message: message.message_id)
