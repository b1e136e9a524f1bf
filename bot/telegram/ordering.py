"""Each user's updates one at a time, in arrival order; users in parallel. An update is looked at as it arrives,
before it waits its turn: a button press is answered there, and a flood is dropped there, unread and undownloaded.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.core.locks import UserLocks

__all__ = ["PLATFORM", "Arrival", "UserOrderedUpdates"]

log = logging.getLogger(__name__)

PLATFORM = "telegram"  # user keys are "telegram:<user id>", here, in the album collator and in the core

# Sees an update as it arrives, with how many of its user's updates are already waiting; False drops it.
Arrival = Callable[[Update, int], Awaitable[bool]]


class UserOrderedUpdates(BaseUpdateProcessor):
    """Users in parallel, each user's updates one at a time and in arrival order (a photo before its /train start).

    Every update waiting for its user's lock holds one of PTB's ``max_concurrent_updates`` slots: ``arrival`` keeps
    one flooding user from taking them all. It is set once the service exists, after PTB's Application (this
    processor included) was built, since the port must work before the frontend runs.
    """

    def __init__(self, locks: UserLocks, max_concurrent_updates: int = 256) -> None:
        super().__init__(max_concurrent_updates)
        self.locks = locks
        self.arrival: Arrival | None = None
        self._waiting: Counter[int] = Counter()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        user = update.effective_user if isinstance(update, Update) else None
        if user is None:
            await coroutine
            return
        assert isinstance(update, Update)
        try:
            admitted = self.arrival is None or await self.arrival(update, self._waiting[user.id])
        except BaseException:
            _discard(coroutine)
            raise
        if not admitted:
            _discard(coroutine)
            return
        self._waiting[user.id] += 1
        in_line = True
        try:
            async with self.locks.hold(f"{PLATFORM}:{user.id}"):
                self._leave_line(user.id)
                in_line = False
                await coroutine
        finally:
            if in_line:  # cancelled while waiting
                self._leave_line(user.id)

    def _leave_line(self, user_id: int) -> None:
        self._waiting[user_id] -= 1
        if self._waiting[user_id] <= 0:
            del self._waiting[user_id]  # only users with updates in line take memory

    async def initialize(self) -> None:
        """Nothing to set up: the locks live as long as the frontend."""

    async def shutdown(self) -> None:
        """Nothing to free."""


def _discard(coroutine: Awaitable[Any]) -> None:
    # PTB made the handler coroutine before asking us; closed unrun, it does not warn "never awaited".
    if inspect.iscoroutine(coroutine):
        coroutine.close()
    log.debug("dropped an update on arrival")
