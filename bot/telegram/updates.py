"""Telegram updates in, neutral messages and reactions out: the handlers of the PTB Application.

Messages, button presses and reactions of one user arrive here one at a time (``UserOrderedUpdates``); photos are
downloaded here, within Telegram's limits, so the core only ever sees bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from cachetools import LRUCache
from telegram import Message, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, TelegramError
from telegram.ext import BaseUpdateProcessor, ContextTypes

from bot.core.locks import UserLocks
from bot.core.service import HeadshotService
from bot.core.types import Attachment, ChatRef, IncomingMessage, Reply, Undeliverable
from bot.telegram import texts
from bot.telegram.albums import AlbumCollator, Spawn
from bot.telegram.port import TelegramPort

__all__ = ["TelegramUpdates", "UserOrderedUpdates"]

log = logging.getLogger(__name__)

PLATFORM = "telegram"
_MAX_REMEMBERED = 100_000  # group chats refused / users tipped, kept in memory; the least recently seen go first


class UserOrderedUpdates(BaseUpdateProcessor):
    """Users in parallel, each user's updates one at a time and in arrival order (a photo before its /train start)."""

    def __init__(self, locks: UserLocks, max_concurrent_updates: int = 256) -> None:
        super().__init__(max_concurrent_updates)
        self.locks = locks

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        user = update.effective_user if isinstance(update, Update) else None
        if user is None:
            await coroutine
            return
        async with self.locks.hold(f"{PLATFORM}:{user.id}"):
            await coroutine

    async def initialize(self) -> None:
        """Nothing to set up: the locks live as long as the frontend."""

    async def shutdown(self) -> None:
        """Nothing to free."""


class TelegramUpdates:
    def __init__(
        self, service: HeadshotService, port: TelegramPort, locks: UserLocks, album_wait_s: float, spawn: Spawn
    ) -> None:
        self.service = service
        self.port = port
        self.albums = AlbumCollator(album_wait_s, self._handle_parts, locks, spawn)
        # Used as sets: a key present means done. Forgetting one only repeats a reply once.
        self._groups_refused: LRUCache[int, bool] = LRUCache(maxsize=_MAX_REMEMBERED)
        self._tipped: LRUCache[str, bool] = LRUCache(maxsize=_MAX_REMEMBERED)

    # Handlers (registered in frontend.py).

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat = update.effective_message, _chat_ref(update)
        if message is None or chat is None:
            return
        if not chat.is_private:
            await self._refuse_group(message, context.bot.username)
            return
        if message.media_group_id is not None:
            self.albums.add(chat, message)
            return
        await self.albums.flush(chat.user_key)
        await self._handle_parts(chat, [message])

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query, chat = update.callback_query, _chat_ref(update)
        if query is None or chat is None:
            return
        command = self.port.callbacks.decode(query.data or "")
        try:
            await query.answer()  # stops the button's spinner; a query too old to answer changes nothing else
        except TelegramError:
            log.info("answering callback query of %s failed", chat.user_key, exc_info=True)
        if not chat.is_private:
            return
        if command is None:
            await self.port.send(chat.chat_id, Reply(texts.BUTTON_EXPIRED))
            return
        await self.albums.flush(chat.user_key)
        await self.service.handle_message(IncomingMessage(chat, command), self.port)

    async def on_reaction(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        reaction, chat = update.message_reaction, _chat_ref(update)
        # Only a first reaction marks a favorite: changing the emoji or taking it back does nothing.
        if reaction is None or chat is None or reaction.old_reaction or not reaction.new_reaction:
            return
        await self.albums.flush(chat.user_key)
        await self.service.handle_reaction(chat, str(reaction.message_id), self.port)

    async def on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, voice, video...: say what works instead of staying silent."""
        chat = _chat_ref(update)
        if chat is not None and chat.is_private:
            await self.port.send(chat.chat_id, Reply(texts.NOT_A_PHOTO_MESSAGE))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The one error handler: the traceback to the log, a short true sentence to the user."""
        log.error("handling a Telegram update failed", exc_info=context.error)
        chat = _chat_ref(update) if isinstance(update, Update) else None
        if chat is not None and chat.is_private:
            try:
                await self.port.send(chat.chat_id, Reply(texts.INTERNAL_ERROR))
            except (TelegramError, Undeliverable):
                log.warning("telling %s about the error failed too", chat.user_key, exc_info=True)

    # Translation.

    async def _handle_parts(self, chat: ChatRef, parts: list[Message]) -> None:
        """One message or one album (its parts in order) as one ``IncomingMessage``; the first caption counts."""
        text = next((part.text or part.caption or "" for part in parts if part.text or part.caption), "")
        if text.split(" ", 1)[0].split("@", 1)[0].lower() == "/start" and text.partition(" ")[2].strip() == "train":
            text = "/train"  # the deep link from a group (t.me/<bot>?start=train) opens the chat with this
        attachments, refusals, compressed = await self._download(parts)
        if refusals:
            await self.port.send(chat.chat_id, Reply("\n".join(refusals)))
            if not attachments and not text.startswith("/"):
                return
        await self.service.handle_message(IncomingMessage(chat, text, tuple(attachments)), self.port)
        if compressed and chat.user_key not in self._tipped:
            self._tipped[chat.user_key] = True
            await self.port.send(chat.chat_id, Reply(texts.SEND_AS_FILE_TIP))

    async def _download(self, parts: list[Message]) -> tuple[list[Attachment], list[str], bool]:
        """(attachments, refusals, whether any came as compressed photos). Nothing over 20 MB is asked for."""
        attachments: list[Attachment] = []
        refusals: list[str] = []
        compressed = False
        for part in parts:
            if part.photo:
                media: Any = part.photo[-1]  # the largest size Telegram kept
                name, compressed = "", True
            elif part.document is not None:
                media = part.document
                name = part.document.file_name or "file"
            else:
                continue
            if media.file_size is not None and media.file_size > texts.DOWNLOAD_LIMIT_BYTES:
                refusals.append(texts.too_big(name or "photo", media.file_size))
                continue
            try:
                file = await self.port.call(media.get_file, "getFile")
                data = bytes(await file.download_as_bytearray())
            except BadRequest as error:
                if "too big" in str(error).lower():  # file_size can be missing; Telegram still refuses
                    refusals.append(texts.too_big(name or "photo", texts.DOWNLOAD_LIMIT_BYTES + 1))
                else:
                    log.warning("downloading a file failed: %s", error)
                    refusals.append(texts.DOWNLOAD_FAILED.format(name=name or "photo"))
                continue
            except TelegramError as error:
                log.warning("downloading a file failed: %s", error)
                refusals.append(texts.DOWNLOAD_FAILED.format(name=name or "photo"))
                continue
            attachments.append(Attachment(name, data))
        return attachments, refusals, compressed

    async def _refuse_group(self, message: Message, bot_username: str | None) -> None:
        """Answer a group once, with a link to the private chat; nothing of the group is downloaded or stored."""
        if message.chat.id in self._groups_refused:
            return
        self._groups_refused[message.chat.id] = True
        link = f"https://t.me/{bot_username}?start=train" if bot_username else "a private chat with me"
        await self.port.send(str(message.chat.id), Reply(texts.GROUP_REFUSED.format(link=link)))


def _chat_ref(update: Update) -> ChatRef | None:
    user = update.effective_user
    if user is None:
        return None
    chat = update.effective_chat
    # A button under a message too old for Telegram to include: in a private chat, the chat id is the user id.
    chat_id = chat.id if chat is not None else user.id
    is_private = chat is None or chat.type == ChatType.PRIVATE
    return ChatRef(PLATFORM, str(user.id), str(chat_id), is_private)
