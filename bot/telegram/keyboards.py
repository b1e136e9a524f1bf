"""Core ``Button``s as inline keyboards: a button's callback data is its command, so pressing it is sending it.

Telegram caps callback data at 64 bytes. Every core command fits today; a longer one travels as a short id mapped
back here (in memory: after a restart such a button answers that it has expired, never does something else).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cachetools import LRUCache
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import InlineKeyboardButtonLimit

from bot.core.types import Button

__all__ = ["CallbackCommands"]

_ID_PREFIX = "#"  # core commands start with "/", so a "#" can only be one of our ids
_KEPT = 10_000


class CallbackCommands:
    def __init__(self) -> None:
        self._long: LRUCache[str, str] = LRUCache(maxsize=_KEPT)

    def encode(self, command: str) -> str:
        if len(command.encode()) <= InlineKeyboardButtonLimit.MAX_CALLBACK_DATA:
            return command
        short = _ID_PREFIX + hashlib.sha256(command.encode()).hexdigest()[:32]
        self._long[short] = command
        return short

    def decode(self, data: str) -> str | None:
        """The command a button stands for; None for an id this process no longer knows."""
        if data.startswith(_ID_PREFIX):
            return self._long.get(data)
        return data

    def markup(self, buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
        if not buttons:
            return None
        longest = max(len(button.label) for button in buttons)
        # Short labels ("★ #3") sit five to a row; style names two; anything long gets its own row.
        per_row = 5 if longest <= 6 else 2 if longest <= 20 else 1
        keys = [InlineKeyboardButton(button.label, callback_data=self.encode(button.command)) for button in buttons]
        return InlineKeyboardMarkup([keys[start : start + per_row] for start in range(0, len(keys), per_row)])
