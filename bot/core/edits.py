"""Edits of one message at most once every ``interval_s``: in between only the latest reply is kept, and it is
flushed when the interval is up, so a final text is never dropped. Platform-free: each adapter's port hands it the
call that edits a message now (chat platforms rate-limit edits; progress must never provoke a 429)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.core.locks import UserLocks
from bot.core.types import Reply

__all__ = ["EditThrottle"]

log = logging.getLogger(__name__)

EditCall = Callable[[str, str, Reply], Awaitable[None]]
_PRUNE_AT = 1_000  # idle slots kept before old ones are dropped


@dataclass
class _Slot:
    last: float = -math.inf
    pending: Reply | None = None
    flusher: asyncio.Task[None] | None = None


class EditThrottle:
    def __init__(self, interval_s: float, edit_now: EditCall) -> None:
        self.interval_s = interval_s
        self._edit_now = edit_now
        self._locks = UserLocks()  # one edit of a message at a time
        # Not a size-bounded cache: a slot may only go once idle (no edit waiting or running, interval over).
        self._slots: dict[tuple[str, str], _Slot] = {}

    async def edit(self, chat_id: str, message_id: str, reply: Reply, *, final: bool = False) -> None:
        """Edit now when the message's interval is up (a failure reaches the caller), else keep it for later.

        A ``final`` edit is never kept: it replaces any edit still waiting and goes out now, so its failure reaches
        the caller (who can post the text as a new message instead).
        """
        key = (chat_id, message_id)
        slot = self._slots.get(key)
        if slot is None:
            self._prune()
            slot = self._slots[key] = _Slot()
        if final:
            await self._edit_final(chat_id, message_id, slot, reply)
            return
        if slot.flusher is None and not self._locks.locked(key) and time.monotonic() - slot.last >= self.interval_s:
            async with self._locks.hold(key):
                try:
                    await self._edit_now(chat_id, message_id, reply)
                finally:
                    slot.last = time.monotonic()
            return
        slot.pending = reply
        if slot.flusher is None:
            slot.flusher = asyncio.create_task(self._flush(chat_id, message_id, slot), name=f"edit-{message_id}")

    async def _edit_final(self, chat_id: str, message_id: str, slot: _Slot, reply: Reply) -> None:
        # The waiting edit is superseded: stop it (even mid-call; this edit overwrites whatever it did).
        slot.pending = None
        if slot.flusher is not None:
            slot.flusher.cancel()
            await asyncio.wait({slot.flusher})
        async with self._locks.hold((chat_id, message_id)):
            try:
                await self._edit_now(chat_id, message_id, reply)
            finally:
                slot.last = time.monotonic()

    async def _flush(self, chat_id: str, message_id: str, slot: _Slot) -> None:
        try:
            async with self._locks.hold((chat_id, message_id)):
                while slot.pending is not None:
                    await asyncio.sleep(max(0.0, slot.last + self.interval_s - time.monotonic()))
                    reply, slot.pending = slot.pending, None
                    try:
                        await self._edit_now(chat_id, message_id, reply)
                    except Exception:
                        log.warning("deferred edit of message %s failed", message_id, exc_info=True)
                    finally:
                        slot.last = time.monotonic()
        finally:
            slot.flusher = None

    def _prune(self) -> None:
        if len(self._slots) < _PRUNE_AT:
            return
        idle_before = time.monotonic() - self.interval_s
        for key, slot in list(self._slots.items()):
            if slot.flusher is None and not self._locks.locked(key) and slot.last < idle_before:
                del self._slots[key]

    async def aclose(self) -> None:
        """Flush the edits still waiting for their interval (called before the client closes)."""
        flushers = [slot.flusher for slot in self._slots.values() if slot.flusher is not None]
        await asyncio.gather(*flushers, return_exceptions=True)
