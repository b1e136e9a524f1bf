"""One asyncio lock per key: a user's commands and events are handled one at a time, users in parallel.

The one lock registry of the bot: the frontends and the core lock per user, the edit throttle per message.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

__all__ = ["UserLocks"]


class UserLocks:
    def __init__(self) -> None:
        # Weak values: a lock lives while a holder or a waiter refers to it and goes with the last of them, so
        # thousands of chats over weeks leave nothing behind. A key never has two locks at once: while any task can
        # still use one, it is the one found here.
        self._locks: weakref.WeakValueDictionary[Hashable, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            yield

    def locked(self, key: Hashable) -> bool:
        """Whether someone holds ``key``'s lock now."""
        lock = self._locks.get(key)
        return lock is not None and lock.locked()

    def __len__(self) -> int:
        """Keys whose lock is held or waited for."""
        return len(self._locks)
