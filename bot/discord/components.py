"""Core ``Button``s as Discord buttons whose ``custom_id`` is the command, so pressing one is sending it.

One ``DynamicItem`` class, registered at start, matches every ``custom_id`` with our prefix on any message, sent
before or after a restart: no per-message view is kept in memory, and old buttons keep working. Discord caps
``custom_id`` at 100 characters; every core command fits today, a longer one travels as a short id mapped back here
(in memory: after a restart such a button answers that it has expired, never does something else).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Self

import discord
from cachetools import LRUCache

from bot.core.types import Button

__all__ = ["BUTTON_EVENT", "ButtonIds", "CommandButton"]

PREFIX = "hs:"
BUTTON_EVENT = "command_button"  # dispatched as ``on_command_button(interaction, ref)`` on the client
CUSTOM_ID_MAX = 100
_SHORT = "#"  # core commands start with "/", so a "#" can only be one of our ids
_KEPT = 10_000
_PER_ROW = 5  # Discord's limit of buttons in one row; five rows at most


class CommandButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"hs:(?P<ref>.+)"):
    """A press hands the button's reference to the client as an event, where the frontend translates it."""

    def __init__(self, label: str, ref: str) -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=label[:80], custom_id=PREFIX + ref, style=discord.ButtonStyle.secondary
        )
        super().__init__(button)
        self.ref = ref

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        label = item.label if isinstance(item, discord.ui.Button) and item.label else ""
        return cls(label, match["ref"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch(BUTTON_EVENT, interaction, self.ref)


class ButtonIds:
    def __init__(self) -> None:
        self._long: LRUCache[str, str] = LRUCache(maxsize=_KEPT)

    def encode(self, command: str) -> str:
        if len(PREFIX + command) <= CUSTOM_ID_MAX:
            return command
        short = _SHORT + hashlib.sha256(command.encode()).hexdigest()[:32]
        self._long[short] = command
        return short

    def decode(self, ref: str) -> str | None:
        """The command a button stands for; None for an id this process no longer knows."""
        if ref.startswith(_SHORT):
            return self._long.get(ref)
        return ref

    def view(self, buttons: Sequence[Button]) -> discord.ui.View | None:
        if not buttons:
            return None
        view = discord.ui.View(timeout=None)
        for index, button in enumerate(buttons[: _PER_ROW * 5]):
            item = CommandButton(button.label, self.encode(button.command))
            item.row = index // _PER_ROW
            view.add_item(item)
        return view
