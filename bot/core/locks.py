"""One asyncio lock per user: a user's commands and events are handled one at a time, users in parallel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["UserLocks"]


class UserLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, user_key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(user_key, asyncio.Lock())
        self._users[user_key] = self._users.get(user_key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            # Drop idle locks so thousands of chats over weeks do not grow this dict without bound.
            self._users[user_key] -= 1
            if self._users[user_key] == 0:
                del self._users[user_key]
                del self._locks[user_key]
