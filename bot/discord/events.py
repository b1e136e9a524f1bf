"""Discord events in, neutral messages and reactions out: DM messages, slash commands, button presses, ⭐ reactions.

Each user's events are handled one at a time and in arrival order (``locks``), so photos dropped into the DM are in
before a ``/train start`` that followed them. Attachments are checked against the download limit and their type
before a byte is fetched, so the core only ever sees bytes worth reading. Nothing from a server is read or stored.

Each DM is handled once: its id is recorded as the user's last handled message, so the DMs a restart missed are read
back from history (``catchup``) before any new event is handled, and one seen both ways is handled once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import discord

from bot.core.locks import UserLocks
from bot.core.service import HeadshotService
from bot.core.types import Attachment, ChatRef, ChatUnreachable, IncomingMessage, Reply, Undeliverable
from bot.discord import texts
from bot.discord.catchup import missed_dms
from bot.discord.port import DiscordPort
from bot.store.database import Store

__all__ = ["PLATFORM", "STAR", "DiscordEvents"]

log = logging.getLogger(__name__)

PLATFORM = "discord"
STAR = "⭐"
_ANSWERED = "answered"  # ``interaction.extras`` key: the deferred response's loading message was replaced


class DiscordEvents:
    def __init__(
        self, service: HeadshotService, port: DiscordPort, locks: UserLocks, store: Store, max_download_bytes: int
    ) -> None:
        self.service = service
        self.port = port
        self.locks = locks
        self.store = store
        self.max_download_bytes = max_download_bytes
        # Set while no read-back is running: new events wait for the missed ones, so a user's order holds.
        self.caught_up = asyncio.Event()
        self._catch_ups = 0
        self._in_hand: set[asyncio.Task[Any]] = set()

    # Plain DM messages and reactions (gateway events).

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not isinstance(message.channel, discord.DMChannel):
            return  # our own posts, other bots, and anything outside DMs (never asked for, never kept)
        with self._handling():
            await self.caught_up.wait()
            await self._handle_dm(message)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent, bot_id: int | None) -> None:
        # Only ⭐ marks a favorite: other emoji are the user's own business. Raw events, so old messages count too.
        if payload.guild_id is not None or payload.user_id == bot_id or str(payload.emoji) != STAR:
            return
        chat = ChatRef(PLATFORM, str(payload.user_id), str(payload.channel_id))
        with self._handling():
            async with self.locks.hold(chat.user_key):
                await self.service.handle_reaction(chat, str(payload.message_id), self.port)

    async def catch_up(self) -> None:
        """A new gateway session: handle the DMs that arrived while none was open, before anything newer."""
        self._catch_ups += 1
        self.caught_up.clear()
        count = 0
        try:
            with self._handling():
                async for message in missed_dms(self.port.client, self.store, PLATFORM):
                    try:
                        await self._handle_dm(message)
                    except Exception as error:
                        await self.on_error(error, str(message.channel.id))
                    count += 1
        finally:
            self._catch_ups -= 1
            if not self._catch_ups:
                self.caught_up.set()
        if count:
            log.info("handled %d DMs sent while the bot was away", count)

    async def settle(self, timeout_s: float) -> None:
        """Wait for the events in hand to be handled (the gateway is closed: no new ones come)."""
        if self._in_hand:
            await asyncio.wait(set(self._in_hand), timeout=timeout_s)

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
        with self._handling():
            await self.caught_up.wait()
            try:
                chat = await self._chat(interaction)
                await self._handle(chat, command, photos, at=interaction.id)
                if then is not None:
                    await self._handle(chat, then, ())
            except (discord.Forbidden, ChatUnreachable) as error:
                # The DM refuses us (closed DMs, a block, or a user install sharing no server: 50007, 50278), so
                # the interaction is the one way left to say so. The user is not marked as left: opening the DM
                # fixes it, and a job's next word finds out either way.
                log.info("cannot DM the user who sent %s: %s", command.split(" ", 1)[0], error)
                await self._answer(interaction, texts.OPEN_DM_FIRST)
                return
            echoed = texts.echo(then or command, len(photos)) if in_dm else texts.ELSEWHERE
            await self._answer(interaction, echoed)

    async def on_button(self, interaction: discord.Interaction[Any], ref: str) -> None:
        """A press of one of our buttons, however old: the same as sending its command."""
        if await self._refuse_server(interaction):
            return
        await interaction.response.defer()  # acknowledges the press; the answers come as messages
        with self._handling():
            await self.caught_up.wait()
            chat = await self._chat(interaction)
            command = self.port.buttons.decode(ref)
            try:
                if command is None:
                    await self.port.send(chat.chat_id, Reply(texts.BUTTON_EXPIRED))
                    return
                await self._handle(chat, command, (), at=interaction.id)
            except ChatUnreachable:
                await self._answer(interaction, texts.OPEN_DM_FIRST)

    async def on_error(
        self, error: BaseException, chat_id: str | None, interaction: discord.Interaction[Any] | None = None
    ) -> None:
        """The one error handler: the traceback to the log, a short true sentence to the user."""
        log.error("handling a Discord event failed", exc_info=error)
        try:
            if interaction is not None:
                await self._answer(interaction, texts.INTERNAL_ERROR)
            elif chat_id is not None:
                await self.port.send(chat_id, Reply(texts.INTERNAL_ERROR))
        except (discord.DiscordException, Undeliverable):
            log.warning("telling the user about the error failed too", exc_info=True)

    # Translation.

    async def _handle_dm(self, message: discord.Message) -> None:
        """A DM from its user, live or read back from history: handled unless it was already."""
        chat = ChatRef(PLATFORM, str(message.author.id), str(message.channel.id))
        async with self.locks.hold(chat.user_key):
            last = await self.store.last_handled(chat.user_key)
            if last is not None and message.id <= int(last):
                return
            await self._handle_locked(chat, message.content, message.attachments)
            await self.store.mark_handled(chat.user_key, str(message.id))

    async def _handle(
        self, chat: ChatRef, text: str, files: Sequence[discord.Attachment], *, at: int | None = None
    ) -> None:
        """A command from an interaction whose id (a snowflake: a time) is ``at``."""
        async with self.locks.hold(chat.user_key):
            await self._handle_locked(chat, text, files)
            if at is not None and await self.store.last_handled(chat.user_key) is None:
                # So far only commands, no DM: the DMs a restart could miss are those after this moment.
                await self.store.mark_handled(chat.user_key, str(at))

    async def _handle_locked(self, chat: ChatRef, text: str, files: Sequence[discord.Attachment]) -> None:
        if not await self.service.admit(chat, self.port):  # before any download: a flood costs no bandwidth
            return
        attachments, refusals = await self._download(files)
        if refusals:
            await self.port.send(chat.chat_id, Reply("\n".join(refusals)))
            if not attachments and not text.startswith("/"):
                return
        await self.service.handle_message(IncomingMessage(chat, text, tuple(attachments)), self.port, admitted=True)

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

    async def _answer(self, interaction: discord.Interaction[Any], text: str) -> None:
        """Say ``text`` in the interaction: the loading message of a deferred reply is edited (Discord would turn
        the first followup into that edit anyway, ephemeral flag ignored); anything later is a private followup."""
        response = interaction.response
        if not response.is_done():
            await response.send_message(text, ephemeral=True)
        elif response.type is discord.InteractionResponseType.deferred_channel_message and not interaction.extras.get(
            _ANSWERED
        ):
            await interaction.edit_original_response(content=text)
            interaction.extras[_ANSWERED] = True
        else:
            await interaction.followup.send(text, ephemeral=True)

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

    @contextmanager
    def _handling(self) -> Iterator[None]:
        """Counts the event as in hand until handled, so a shutdown can wait for it (``settle``)."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._in_hand.add(task)
        try:
            yield
        finally:
            self._in_hand.discard(task)
