"""Telegram updates in, neutral messages and reactions out: the handlers of the PTB Application.

Messages, button presses and reactions of one user arrive here one at a time (``UserOrderedUpdates``), after
``arrive`` let them in; photos are downloaded here, within Telegram's limits, so the core only ever sees bytes.
"""

from __future__ import annotations

import logging
from typing import Any

from cachetools import LRUCache
from telegram import CallbackQuery, Message, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from bot.core import texts as core_texts
from bot.core.locks import UserLocks
from bot.core.service import HeadshotService
from bot.core.types import Attachment, ChatRef, IncomingMessage, Reply, Undeliverable
from bot.telegram import texts
from bot.telegram.albums import AlbumCollator, Spawn, caption_of
from bot.telegram.ordering import PLATFORM
from bot.telegram.port import TelegramPort

__all__ = ["TelegramUpdates"]

log = logging.getLogger(__name__)

_MAX_REMEMBERED = 100_000  # group chats refused / users tipped, kept in memory; the least recently seen go first


class TelegramUpdates:
    def __init__(
        self,
        service: HeadshotService,
        port: TelegramPort,
        locks: UserLocks,
        album_wait_s: float,
        spawn: Spawn,
        *,
        max_queued: int = 30,
    ) -> None:
        self.service = service
        self.port = port
        self.albums = AlbumCollator(album_wait_s, self._handle_parts, locks, spawn)
        self.max_queued = max_queued
        # Used as sets: a key present means done. Forgetting one only repeats a reply once.
        self._groups_refused: LRUCache[int, bool] = LRUCache(maxsize=_MAX_REMEMBERED)
        self._tipped: LRUCache[str, bool] = LRUCache(maxsize=_MAX_REMEMBERED)
        self._backlog_told: LRUCache[str, bool] = LRUCache(maxsize=_MAX_REMEMBERED)

    # On arrival, before the update waits for the user's earlier ones (``UserOrderedUpdates.arrival``).

    async def arrive(self, update: Update, waiting: int) -> bool:
        """Whether to handle ``update`` in its turn. A press is answered now, however long the user's album takes;
        a flood, or more than ``max_queued`` updates in line, is dropped before anything is downloaded."""
        chat = _chat_ref(update)
        if update.callback_query is not None:
            await _answer(update.callback_query)
        if chat is None or not chat.is_private or update.my_chat_member is not None:
            return True  # a group costs one refusal; blocking or unblocking the bot is never dropped
        if waiting >= self.max_queued:
            await self._tell_backlogged(chat)
            return False
        self._backlog_told.pop(chat.user_key, None)
        if update.message is None and update.callback_query is None:
            return True  # a reaction: the core counts it against the flood limit itself
        try:
            return await self.service.admit(chat, self.port)
        except (TelegramError, Undeliverable):
            # Only the "slow down" reply to a message being dropped sends anything, and it failed: dropped all the same.
            log.info("telling %s to slow down failed", chat.user_key, exc_info=True)
            return False

    async def _tell_backlogged(self, chat: ChatRef) -> None:
        """The first update dropped from a full line gets "slow down", as a flood's first does; the rest nothing."""
        if chat.user_key in self._backlog_told:
            return
        self._backlog_told[chat.user_key] = True
        log.info("%s has %d updates in line already; dropping new ones", chat.user_key, self.max_queued)
        try:
            await self.port.send(chat.chat_id, Reply(core_texts.SLOW_DOWN))
        except (TelegramError, Undeliverable):
            log.info("telling %s to slow down failed", chat.user_key, exc_info=True)

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
        await self._handle_parts(chat, [message], caption_of([message]))

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query, chat = update.callback_query, _chat_ref(update)
        if query is None or chat is None:
            return
        command = self.port.callbacks.decode(query.data or "")  # the query was answered on arrival
        if not chat.is_private:
            return
        if command is None:
            await self.port.send(chat.chat_id, Reply(texts.BUTTON_EXPIRED))
            return
        await self.albums.flush(chat.user_key)
        await self.service.handle_message(IncomingMessage(chat, command), self.port, admitted=True)

    async def on_reaction(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        reaction, chat = update.message_reaction, _chat_ref(update)
        # Only a first reaction marks a favorite: changing the emoji or taking it back does nothing.
        if reaction is None or chat is None or reaction.old_reaction or not reaction.new_reaction:
            return
        await self.albums.flush(chat.user_key)
        await self.service.handle_reaction(chat, str(reaction.message_id), self.port)

    async def on_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The user blocked the bot (``kicked``) or unblocked it (``member``) in their private chat."""
        change, chat = update.my_chat_member, _chat_ref(update)
        if change is None or chat is None or not chat.is_private:
            return
        status = change.new_chat_member.status
        if status == ChatMemberStatus.BANNED:
            # Parts of an album still arriving would be answered into a chat that refuses everything, and writing
            # to us counts as being back.
            self.albums.drop(chat.user_key)
            await self.service.user_left(chat)
        elif status == ChatMemberStatus.MEMBER:
            await self.service.user_returned(chat)

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

    async def _handle_parts(self, chat: ChatRef, parts: list[Message], text: str) -> None:
        """One message or one album (its parts in order, ``text`` its caption) as one ``IncomingMessage``."""
        if text.split(" ", 1)[0].split("@", 1)[0].lower() == "/start" and text.partition(" ")[2].strip() == "train":
            text = "/train"  # the deep link from a group (t.me/<bot>?start=train) opens the chat with this
        attachments, refusals, compressed = await self._download(parts)
        if refusals:
            await self.port.send(chat.chat_id, Reply("\n".join(refusals)))
            if not attachments and not text.startswith("/"):
                return
        message = IncomingMessage(chat, text, tuple(attachments))
        await self.service.handle_message(message, self.port, admitted=True)  # each part was admitted on arrival
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
                mime_type = (part.document.mime_type or "").lower()
                # Not fetched unless it may be an image; some apps send HEIC as octet-stream, so the core decides.
                if mime_type not in ("", "application/octet-stream") and not mime_type.startswith("image/"):
                    refusals.append(texts.not_an_image(name, mime_type))
                    continue
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


async def _answer(query: CallbackQuery) -> None:
    try:
        await query.answer()  # stops the button's spinner; a query too old to answer changes nothing else
    except TelegramError:
        log.info("answering callback query %s failed", query.id, exc_info=True)
