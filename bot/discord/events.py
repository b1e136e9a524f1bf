"""Discord events in, neutral messages and reactions out: DM messages, slash commands, button presses, ⭐ reactions.

Each user's events are handled one at a time and in arrival order (``locks``), so photos dropped into the DM are in
before a ``/train start`` that followed them. Attachments are checked against the download limit and their type
before a byte is fetched, so the core only ever sees bytes worth reading. Nothing from a server is read or stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import discord

from bot.core.locks import UserLocks
from bot.core.service import HeadshotService
from bot.core.types import Attachment, ChatRef, IncomingMessage, Reply, Undeliverable
from bot.discord import texts
from bot.discord.port import DiscordPort

__all__ = ["STAR", "DiscordEvents"]

log = logging.getLogger(__name__)

PLATFORM = "discord"
STAR = "⭐"


class DiscordEvents:
    def __init__(self, service: HeadshotService, port: DiscordPort, locks: UserLocks, max_download_bytes: int) -> None:
        self.service = service
        self.port = port
        self.locks = locks
        self.max_download_bytes = max_download_bytes

    # Plain DM messages and reactions (gateway events).

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not isinstance(message.channel, discord.DMChannel):
            return  # our own posts, other bots, and anything outside DMs (never asked for, never kept)
        chat = ChatRef(PLATFORM, str(message.author.id), str(message.channel.id))
        await self._handle(chat, message.content, message.attachments)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent, bot_id: int | None) -> None:
        # Only ⭐ marks a favorite: other emoji are the user's own business. Raw events, so old messages count too.
        if payload.guild_id is not None or payload.user_id == bot_id or str(payload.emoji) != STAR:
            return
        chat = ChatRef(PLATFORM, str(payload.user_id), str(payload.channel_id))
        async with self.locks.hold(chat.user_key):
            await self.service.handle_reaction(chat, str(payload.message_id), self.port)

    # Interactions: acknowledged within Discord's 3 seconds, the work continues as plain DM messages.

    async def on_command(
        self,
        interaction: discord.Interaction[Any],
        command: str,
        photos: Sequence[discord.Attachment] = (),
        *,
        then: str | None = None,
    ) -> None:
        """A slash command: defer ("thinking…"), hand it (and ``then``) to the core, then echo it in the response."""
        if await self._refuse_server(interaction):
            return
        in_dm = interaction.context.dm_channel is True
        # Outside our DM (a user install used in another private chat) the answers go to our DM; say so privately.
        await interaction.response.defer(thinking=True, ephemeral=not in_dm)
        chat = await self._chat(interaction)
        await self._handle(chat, command, photos)
        if then is not None:
            await self._handle(chat, then, ())
        echoed = texts.echo(then or command, len(photos)) if in_dm else texts.ELSEWHERE
        await interaction.edit_original_response(content=echoed)

    async def on_button(self, interaction: discord.Interaction[Any], ref: str) -> None:
        """A press of one of our buttons, however old: the same as sending its command."""
        if await self._refuse_server(interaction):
            return
        await interaction.response.defer()  # acknowledges the press; the answers come as messages
        chat = await self._chat(interaction)
        command = self.port.buttons.decode(ref)
        if command is None:
            await self.port.send(chat.chat_id, Reply(texts.BUTTON_EXPIRED))
            return
        await self._handle(chat, command, ())

    async def on_error(
        self, error: BaseException, chat_id: str | None, interaction: discord.Interaction[Any] | None = None
    ) -> None:
        """The one error handler: the traceback to the log, a short true sentence to the user."""
        log.error("handling a Discord event failed", exc_info=error)
        try:
            if interaction is not None and not interaction.response.is_done():
                await interaction.response.send_message(texts.INTERNAL_ERROR, ephemeral=True)
            elif interaction is not None:
                await interaction.followup.send(texts.INTERNAL_ERROR, ephemeral=True)
            elif chat_id is not None:
                await self.port.send(chat_id, Reply(texts.INTERNAL_ERROR))
        except (discord.DiscordException, Undeliverable):
            log.warning("telling the user about the error failed too", exc_info=True)

    # Translation.

    async def _handle(self, chat: ChatRef, text: str, files: Sequence[discord.Attachment]) -> None:
        async with self.locks.hold(chat.user_key):
            attachments, refusals = await self._download(files)
            if refusals:
                await self.port.send(chat.chat_id, Reply("\n".join(refusals)))
                if not attachments and not text.startswith("/"):
                    return
            await self.service.handle_message(IncomingMessage(chat, text, tuple(attachments)), self.port)

    async def _download(self, files: Sequence[discord.Attachment]) -> tuple[list[Attachment], list[str]]:
        """(attachments, refusals). Nothing over the limit and nothing that says it is not an image is fetched."""
        attachments: list[Attachment] = []
        refusals: list[str] = []
        for file in files:
            if file.size > self.max_download_bytes:
                refusals.append(texts.too_big(file.filename, file.size, self.max_download_bytes))
                continue
            content_type = (file.content_type or "").split(";", 1)[0].strip()
            if content_type and not content_type.startswith("image/"):
                refusals.append(texts.not_an_image(file.filename, content_type))
                continue
            try:
                data = await file.read()
            except discord.HTTPException as error:
                log.warning("downloading attachment %s failed: %s", file.id, error.status)
                refusals.append(texts.DOWNLOAD_FAILED.format(name=file.filename))
                continue
            attachments.append(Attachment(file.filename, data))
        return attachments, refusals

    async def _refuse_server(self, interaction: discord.Interaction[Any]) -> bool:
        """In a server: one ephemeral sentence, nothing read or stored. True when refused."""
        if interaction.guild_id is None:
            return False
        await interaction.response.send_message(texts.SERVER_REFUSED, ephemeral=True)
        return True

    async def _chat(self, interaction: discord.Interaction[Any]) -> ChatRef:
        user = interaction.user
        if interaction.context.dm_channel is True and interaction.channel_id is not None:
            channel_id = interaction.channel_id
        else:  # a private chat that is not ours: the work goes on in the user's DM with the bot
            channel_id = (user.dm_channel or await user.create_dm()).id
        return ChatRef(PLATFORM, str(user.id), str(channel_id))
