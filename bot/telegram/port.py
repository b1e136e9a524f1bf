"""Telegram's side of ``ChatPort``: replies with inline keyboards, throttled edits, photos, documents.

Every Bot API call goes through ``call_with_retry``, so a 429 (``RetryAfter``) waits what Telegram asks and tries
again instead of losing the reply. Edits of one message go out at most once every ``edit_interval_s``; in between,
only the latest text is kept and flushed when the interval is up, so a final text is never dropped. Refusals that
no retry fixes (the user blocked the bot, a file too big) leave the port as ``Undeliverable`` (``refusals``).
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

from telegram import Bot, InputMediaDocument
from telegram.constants import MessageLimit
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.warnings import PTBDeprecationWarning

from bot.core.edits import EditThrottle
from bot.core.types import Button, ChatUnreachable, OutgoingImage, Reply, Undeliverable
from bot.telegram import texts
from bot.telegram.keyboards import CallbackCommands

__all__ = ["TelegramPort", "call_with_retry", "refusals", "retry_after_seconds"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MEDIA_GROUP_MAX = 10  # Telegram's sendMediaGroup takes 2 to 10 items
# PTB's default read timeout (5 s) can expire while Telegram still processes an upload that then succeeds; the retry
# would post it twice (PTB#3937). Uploads get this long to answer.
MEDIA_TIMEOUT_S = 60.0
# Bad Request descriptions (PTB drops the "Bad Request: " prefix) that no retry fixes.
_CHAT_GONE = ("chat not found", "user is deactivated")
_REFUSED = ("photo_invalid_dimensions", "too big", "too large", "message to edit not found", "wrong file identifier")


def retry_after_seconds(error: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds, whichever type this PTB version hands out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)  # int today, timedelta in PTB's next major
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def call_with_retry(call: Callable[[], Awaitable[T]], *, max_retries: int, what: str) -> T:
    """Run one Bot API call; on ``RetryAfter`` sleep as long as Telegram says and try again, up to ``max_retries``."""
    for attempt in range(max_retries + 1):
        try:
            return await call()
        except RetryAfter as error:
            if attempt == max_retries:
                raise
            wait = retry_after_seconds(error)
            log.info("Telegram rate-limited %s; retrying in %.1f s", what, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable: the loop returns or raises")


@contextmanager
def refusals() -> Iterator[None]:
    """Telegram's permanent refusals as ``Undeliverable``; every other error passes through (transient).

    403 ``Forbidden`` (blocked by the user, deactivated, can't initiate a conversation) and "chat not found" mean the
    chat is gone; a photo of invalid dimensions, a file too big (400, or 413 from the server) or a ``ValueError`` of
    an input the bot built mean this message can never be sent.
    """
    try:
        yield
    except Forbidden as error:
        raise ChatUnreachable(f"telegram: {error}") from error
    except BadRequest as error:  # before NetworkError, which it subclasses
        text = str(error).lower()
        if any(marker in text for marker in _CHAT_GONE):
            raise ChatUnreachable(f"telegram: {error}") from error
        if any(marker in text for marker in _REFUSED):
            raise Undeliverable(f"telegram: {error}") from error
        raise
    except NetworkError as error:
        if "(413)" in str(error) or "entity too large" in str(error).lower():
            raise Undeliverable(f"telegram: {error}") from error
        raise
    except ValueError as error:
        raise Undeliverable(f"telegram: {error}") from error


class TelegramPort:
    """Message ids are Telegram's per-chat message ids, as strings; chat ids are the chats' ids."""

    platform = "telegram"
    upload_limit_bytes = texts.FILE_UPLOAD_LIMIT_BYTES  # documents sent by a bot through the cloud Bot API

    def __init__(
        self, bot: Bot, *, edit_interval_s: float = 3.0, max_retries: int = 3, media_timeout_s: float = MEDIA_TIMEOUT_S
    ) -> None:
        self.bot = bot
        self.media_timeout_s = media_timeout_s
        self.edit_interval_s = edit_interval_s
        self.max_retries = max_retries
        self.callbacks = CallbackCommands()
        # Delivery may start before the frontend has initialized the bot; calls wait for it instead of failing.
        self.ready = asyncio.Event()
        self._edits = EditThrottle(edit_interval_s, self._edit_now)

    async def call(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Any Bot API call, once the bot is up, with the 429 handling every call here gets."""
        await self.ready.wait()
        return await call_with_retry(call, max_retries=self.max_retries, what=what)

    async def send(self, chat_id: str, reply: Reply) -> str:
        markup = self.callbacks.markup(reply.buttons)
        text = _fit(reply.text)
        with refusals():
            message = await self.call(lambda: self.bot.send_message(int(chat_id), text, reply_markup=markup), "send")
        return str(message.message_id)

    async def edit(self, chat_id: str, message_id: str, reply: Reply, *, final: bool = False) -> None:
        await self._edits.edit(chat_id, message_id, reply, final=final)

    async def _edit_now(self, chat_id: str, message_id: str, reply: Reply) -> None:
        markup = self.callbacks.markup(reply.buttons)
        text = _fit(reply.text)
        with refusals():
            try:
                await self.call(
                    lambda: self.bot.edit_message_text(text, int(chat_id), int(message_id), reply_markup=markup),
                    "edit",
                )
            except BadRequest as error:
                # The same text again (a repeated event) is not worth an error; anything else is.
                if "not modified" not in str(error).lower():
                    raise

    async def aclose(self) -> None:
        """Flush the edits still waiting for their interval (called before the bot shuts down)."""
        await self._edits.aclose()

    async def send_image(self, chat_id: str, image: OutgoingImage, buttons: Sequence[Button] = ()) -> str:
        """One photo with its caption and keyboard (a media group can carry neither a keyboard nor more than one
        visible caption, and a reaction on an album lands on its first photo); over 10 MB it goes as a file."""
        send, what = (
            (self.bot.send_document, "send document")
            if len(image.data) > texts.PHOTO_UPLOAD_LIMIT_BYTES
            else (self.bot.send_photo, "send photo")
        )
        markup, caption, timeout = self.callbacks.markup(buttons), _caption(image), self.media_timeout_s
        with refusals():
            message = await self.call(
                lambda: send(
                    int(chat_id),
                    image.data,
                    filename=image.filename,
                    caption=caption,
                    reply_markup=markup,
                    read_timeout=timeout,
                    write_timeout=timeout,
                ),
                what,
            )
        return str(message.message_id)

    async def _send_group(self, chat_id: str, media: Sequence[InputMediaDocument]) -> None:
        timeout = self.media_timeout_s
        await self.call(
            lambda: self.bot.send_media_group(int(chat_id), media, read_timeout=timeout, write_timeout=timeout),
            "send media group",
        )

    async def _send_document(self, chat_id: str, item: OutgoingImage) -> None:
        timeout = self.media_timeout_s
        await self.call(
            lambda: self.bot.send_document(
                int(chat_id),
                item.data,
                filename=item.filename,
                caption=_caption(item),
                read_timeout=timeout,
                write_timeout=timeout,
            ),
            "send document",
        )

    async def send_files(self, chat_id: str, files: Sequence[OutgoingImage]) -> None:
        """Originals as documents (Telegram keeps their bytes as they are), grouped ten to an album."""
        with refusals():
            await self._send_files(chat_id, files)

    async def _send_files(self, chat_id: str, files: Sequence[OutgoingImage]) -> None:
        sendable: list[OutgoingImage] = []
        for item in files:
            if len(item.data) > texts.FILE_UPLOAD_LIMIT_BYTES:
                too_big = texts.FILE_TOO_BIG_TO_SEND.format(
                    name=item.filename,
                    size=texts.megabytes(len(item.data)),
                    limit=texts.megabytes(texts.FILE_UPLOAD_LIMIT_BYTES),
                )
                await self.send(chat_id, Reply(too_big))
            else:
                sendable.append(item)
        for start in range(0, len(sendable), MEDIA_GROUP_MAX):
            chunk = sendable[start : start + MEDIA_GROUP_MAX]
            if len(chunk) == 1:
                await self._send_document(chat_id, chunk[0])
                continue
            media = [InputMediaDocument(item.data, caption=_caption(item), filename=item.filename) for item in chunk]
            await self._send_group(chat_id, media)


def _fit(text: str) -> str:
    limit = MessageLimit.MAX_TEXT_LENGTH
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _caption(image: OutgoingImage) -> str | None:
    limit = MessageLimit.CAPTION_LENGTH
    if not image.caption:
        return None
    return image.caption if len(image.caption) <= limit else image.caption[: limit - 1] + "…"
