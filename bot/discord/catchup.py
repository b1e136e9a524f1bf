"""DMs sent while no gateway session was open, read back from the DM's history.

Discord replays missed events only to a session that RESUMEs; a restarted bot IDENTIFYs anew, so selfies DMed during
a deploy never arrive as events. For each user whose session collects selfies, the DM's history after the last
message the bot handled holds exactly what it missed, oldest first.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import discord

from bot.store.database import Store

__all__ = ["MISSED_MAX", "missed_dms"]

log = logging.getLogger(__name__)

MISSED_MAX = 50  # per user: far more selfies than a session takes, so a long outage reads one page


async def missed_dms(client: discord.Client, store: Store, platform: str) -> AsyncIterator[discord.Message]:
    """Every collecting user's unhandled DMs, user by user, each user's oldest first; a chat that cannot be read
    is logged and skipped (its messages stay after the mark, so the next start reads them again)."""
    for user_key, chat_id, after in await store.collecting_chats(platform):
        user_id = int(user_key.split(":", 1)[1])
        channel = client.get_partial_messageable(int(chat_id), type=discord.ChannelType.private)
        history = channel.history(after=discord.Object(int(after)), limit=MISSED_MAX, oldest_first=True)
        try:
            # The DM holds our own posts too. Read whole before handling: a handler's error is not the history's.
            messages = [message async for message in history if message.author.id == user_id]
        except discord.HTTPException as error:
            log.warning("reading back %s's DM after a restart failed: HTTP %s", user_key, error.status)
            continue
        for message in messages:
            yield message
