"""Discord's side of ``ChatPort``: DM messages with persistent buttons, throttled edits, images and files.

Chat ids are DM channel ids, message ids Discord's snowflakes, both as strings. Every call goes through discord.py's
HTTP client, which waits out a 429 as Discord asks and retries, so a reply is not lost to rate limits.

Headshots go one per message: a ⭐ reaction then names exactly one image, and the core's reaction mapping (one
message id per image) holds as it is. A batch is four headshots, well under Discord's five-message burst per channel.
Originals for ``/favorites`` go ten to a message, Discord's most, and at most 24 MiB to one (Discord refuses a request
over 25 MiB with 413, and the form around the files needs room too). Refusals that no retry fixes (the user blocks DMs
from the bot, a file too big) leave the port as ``Undeliverable`` (``refusals``).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import discord

from bot.core.edits import EditThrottle
from bot.core.types import Button, ChatUnreachable, OutgoingImage, Reply, Undeliverable
from bot.discord import texts
from bot.discord.components import ButtonIds
from bot.discord.files import fit_upload

__all__ = ["DiscordPort", "refusals"]

log = logging.getLogger(__name__)

FILES_PER_MESSAGE = 10  # Discord's limit of attachments on one message
BYTES_PER_MESSAGE = 24 * 2**20  # under Discord's 25 MiB per request, with room for the multipart form itself
TEXT_MAX = 2000  # Discord's limit of characters in a message's content
# Discord's JSON error codes that no retry fixes (developer docs, "JSON Error Codes").
_CHAT_GONE = {
    50007,  # Forbidden: Cannot send messages to this user (DMs closed, or the bot is blocked)
    50278,  # Forbidden: Cannot send messages to this user due to having no mutual guilds
    10003,  # NotFound: Unknown Channel
}
_REFUSED = {
    10008,  # NotFound: Unknown Message (deleted, so it cannot be edited)
    40005,  # Request entity too large
}


@contextmanager
def refusals() -> Iterator[None]:
    """Discord's permanent refusals as ``Undeliverable``; every other error passes through (transient).

    discord.py raises ``Forbidden`` (403) and ``NotFound`` (404), both ``HTTPException`` with Discord's ``code``; a
    413 from the edge may carry no code. ``ValueError`` is ``fit_upload``'s: no JPEG of the image fits the limit.
    """
    try:
        yield
    except discord.HTTPException as error:
        if error.code in _CHAT_GONE:
            raise ChatUnreachable(f"discord: {error}") from error
        if error.code in _REFUSED or error.status == 413:
            raise Undeliverable(f"discord: {error}") from error
        raise
    except ValueError as error:
        raise Undeliverable(f"discord: {error}") from error


class DiscordPort:
    platform = "discord"

    def __init__(
        self, client: discord.Client, *, edit_interval_s: float = 3.0, upload_limit_bytes: int = 10 * 2**20
    ) -> None:
        self.client = client
        self.upload_limit_bytes = upload_limit_bytes
        self.buttons = ButtonIds()
        # Delivery may start before the client has logged in; calls wait for it instead of failing.
        self.ready = asyncio.Event()
        self._edits = EditThrottle(edit_interval_s, self._edit_now)

    async def _channel(self, chat_id: str) -> discord.PartialMessageable:
        await self.ready.wait()
        return self.client.get_partial_messageable(int(chat_id), type=discord.ChannelType.private)

    async def send(self, chat_id: str, reply: Reply) -> str:
        channel = await self._channel(chat_id)
        view = self.buttons.view(reply.buttons)
        with refusals():
            if view is None:
                message = await channel.send(_fit(reply.text))
            else:
                message = await channel.send(_fit(reply.text), view=view)
        return str(message.id)

    async def edit(self, chat_id: str, message_id: str, reply: Reply, *, final: bool = False) -> None:
        await self._edits.edit(chat_id, message_id, reply, final=final)

    async def _edit_now(self, chat_id: str, message_id: str, reply: Reply) -> None:
        channel = await self._channel(chat_id)
        # view=None clears the buttons: a final progress text has none.
        with refusals():
            await channel.get_partial_message(int(message_id)).edit(
                content=_fit(reply.text), view=self.buttons.view(reply.buttons)
            )

    async def aclose(self) -> None:
        """Flush the edits still waiting for their interval (called before the client closes)."""
        await self._edits.aclose()

    async def send_image(self, chat_id: str, image: OutgoingImage, buttons: Sequence[Button] = ()) -> str:
        """One message: the image under the upload limit, its caption as the text, ``buttons`` under it."""
        channel = await self._channel(chat_id)
        with refusals():
            fitted, reencoded = fit_upload(image, self.upload_limit_bytes)
            note = " " + texts.REENCODED.format(limit=texts.megabytes(self.upload_limit_bytes)) if reencoded else ""
            content, view = _fit(image.caption + note) or None, self.buttons.view(buttons)
            if view is None:
                message = await channel.send(content, file=_file(fitted))
            else:
                message = await channel.send(content, file=_file(fitted), view=view)
        return str(message.id)

    async def send_files(self, chat_id: str, files: Sequence[OutgoingImage]) -> None:
        """Originals, ten and 24 MiB at most to a message; one over the upload limit goes as a JPEG copy that fits,
        and says so."""
        channel = await self._channel(chat_id)
        sendable: list[OutgoingImage] = []
        notes: list[str] = []
        limit = texts.megabytes(self.upload_limit_bytes)
        for item in files:
            try:
                fitted, reencoded = fit_upload(item, self.upload_limit_bytes)
            except ValueError:
                log.warning("%s does not fit the upload limit even as JPEG", item.filename, exc_info=True)
                size = texts.megabytes(len(item.data))
                notes.append(texts.FILE_TOO_BIG_TO_SEND.format(name=item.filename, size=size, limit=limit))
                continue
            if reencoded:
                notes.append(f"{item.filename} {texts.REENCODED.format(limit=limit)}")
            sendable.append(fitted)
        with refusals():
            if notes:
                await channel.send(_fit("\n".join(notes)))
            for batch in _batches(sendable):
                await channel.send(files=[_file(item) for item in batch])


def _batches(files: Sequence[OutgoingImage]) -> Iterator[list[OutgoingImage]]:
    """Consecutive runs of files, each within Discord's count and size per message (a file alone may be larger)."""
    batch: list[OutgoingImage] = []
    size = 0
    for item in files:
        if batch and (len(batch) == FILES_PER_MESSAGE or size + len(item.data) > BYTES_PER_MESSAGE):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += len(item.data)
    if batch:
        yield batch


def _file(image: OutgoingImage) -> discord.File:
    return discord.File(io.BytesIO(image.data), filename=image.filename)


def _fit(text: str) -> str:
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "…"
