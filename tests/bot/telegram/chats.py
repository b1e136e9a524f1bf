"""What the Bot API stand-in keeps (users, chats, the bot's messages, files, updates) and what its users do.

``ChatWorld`` is the Telegram side the tests drive: users send texts, photos, documents, stickers and albums, press
buttons and react; the test reads back what the bot posted. ``standin.BotApiStandin`` serves it over HTTP to the bot.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tests.harness import wait_on

T = TypeVar("T")

BOT_USER = {
    "id": 7_000_001,
    "is_bot": True,
    "first_name": "Headshots",
    "username": "HeadshotTestBot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


@dataclass(frozen=True)
class TgUser:
    id: int
    first_name: str


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    status: int = 200
    answered_at: float | None = None


@dataclass
class Sent:
    """A bot message as the user's app shows it now; ``history`` is every text it had, with when."""

    chat_id: int
    message_id: int
    kind: str  # "text", "photo" or "document"
    text: str
    keyboard: list[list[dict[str, Any]]] = field(default_factory=list)
    data: bytes | None = None
    filename: str | None = None
    media_group_id: str | None = None
    history: list[tuple[float, str]] = field(default_factory=list)

    @property
    def buttons(self) -> dict[str, str]:
        """Label -> callback data."""
        return {button["text"]: button.get("callback_data", "") for row in self.keyboard for button in row}


class ChatWorld:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.sent: dict[tuple[int, int], Sent] = {}
        self._files: dict[str, tuple[bytes, int]] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._album_of: dict[tuple[int, int], str] = {}  # (chat, message id) -> the user's album it is part of

    # What the test does as Telegram users.

    async def send_text(self, user: TgUser, text: str, chat: dict[str, Any] | None = None) -> int:
        return await self._user_message(user, {"text": text}, chat)

    def text_update(self, user: TgUser, text: str) -> dict[str, Any]:
        """The update a text from ``user`` makes, not sent: for a request forged outside Telegram."""
        return {"message": self._message(user, {"text": text}, _private(user))}

    async def send_sticker(self, user: TgUser) -> int:
        sticker = {
            **self._add_file(b"webp", 4),
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
        return await self._user_message(user, {"sticker": sticker}, None)

    async def send_photo(
        self,
        user: TgUser,
        data: bytes,
        *,
        caption: str | None = None,
        media_group_id: str | None = None,
        chat: dict[str, Any] | None = None,
    ) -> int:
        # Telegram stores a thumbnail and the (compressed) photo; only the largest is the real picture here.
        thumb = {
            "file_id": f"thumb{next(self._ids)}",
            "file_unique_id": "t",
            "width": 90,
            "height": 90,
            "file_size": 1000,
        }
        full = {**self._add_file(data, len(data)), "width": 512, "height": 512}
        fields: dict[str, Any] = {"photo": [thumb, full]}
        return await self._user_message(user, _with(fields, caption=caption, media_group_id=media_group_id), chat)

    async def send_document(
        self,
        user: TgUser,
        data: bytes,
        file_name: str,
        mime_type: str,
        *,
        size: int | None = None,
        caption: str | None = None,
        media_group_id: str | None = None,
        chat: dict[str, Any] | None = None,
    ) -> int:
        """``size`` overrides the declared file size (a 25 MB file without making 25 MB)."""
        document = {**self._add_file(data, size or len(data)), "file_name": file_name, "mime_type": mime_type}
        fields = _with({"document": document}, caption=caption, media_group_id=media_group_id)
        return await self._user_message(user, fields, chat)

    async def send_album(
        self, user: TgUser, photos: list[bytes], *, caption: str | None = None, as_files: bool = False
    ) -> list[int]:
        """An album: one update per item sharing a media_group_id, the caption on the first only."""
        group = f"album{next(self._ids)}"
        ids = []
        for index, data in enumerate(photos):
            first_caption = caption if index == 0 else None
            if as_files:
                ids.append(
                    await self.send_document(
                        user,
                        data,
                        f"IMG_{index + 1:04d}.jpg",
                        "image/jpeg",
                        caption=first_caption,
                        media_group_id=group,
                    )
                )
            else:
                ids.append(await self.send_photo(user, data, caption=first_caption, media_group_id=group))
        return ids

    async def press(self, user: TgUser, message: Sent, label: str) -> None:
        data = message.buttons[label]
        chat = {"id": message.chat_id, "type": "private", "first_name": user.first_name}
        query = {
            "id": str(next(self._ids)),
            "from": _user(user),
            "chat_instance": "ci",
            "data": data,
            "message": {**self._message_json(message), "chat": chat},
        }
        await self._push({"callback_query": query})

    async def react(self, user: TgUser, message_id: int, emoji: str = "👍") -> None:
        """A reaction in the user's private chat; on a member of an album it lands on the album's first message, as
        Telegram's apps send it (tdesktop#27457)."""
        reaction = {
            "chat": _private(user),
            "message_id": self._album_head(user.id, message_id),
            "user": _user(user),
            "date": int(time.time()),
            "old_reaction": [],
            "new_reaction": [{"type": "emoji", "emoji": emoji}],
        }
        await self._push({"message_reaction": reaction})

    async def delete(self, user: TgUser, message_id: int) -> None:
        """The user deletes a bot message in their private chat: it is gone for the bot too."""
        self.sent.pop((user.id, message_id), None)

    # What the test reads back.

    def messages(self, chat_id: int) -> list[Sent]:
        return [sent for (chat, _), sent in sorted(self.sent.items()) if chat == chat_id]

    def texts(self, chat_id: int) -> str:
        return "\n".join(sent.text for sent in self.messages(chat_id))

    def called(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def wait_for(self, probe: Callable[[], T | None], timeout_s: float = 60, what: str = "") -> T:
        """Wait until ``probe()`` returns something truthy (re-checked after every call the bot makes)."""
        return await wait_on(self._changed, probe, timeout_s, what)

    # Bookkeeping.

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _message_json(self, sent: Sent) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "date": int(time.time()),
            "from": BOT_USER,
            "chat": {"id": sent.chat_id, "type": "private"},
        }
        if sent.kind == "text":
            message["text"] = sent.text
        else:
            file = {
                "file_id": f"out{sent.chat_id}-{sent.message_id}",
                "file_unique_id": "o",
                "file_size": len(sent.data or b""),
            }
            message["photo" if sent.kind == "photo" else "document"] = (
                [{**file, "width": 64, "height": 64}] if sent.kind == "photo" else file
            )
            if sent.text:
                message["caption"] = sent.text
        if sent.media_group_id:
            message["media_group_id"] = sent.media_group_id
        if sent.keyboard:
            message["reply_markup"] = {"inline_keyboard": sent.keyboard}
        return message

    def _album_head(self, chat_id: int, message_id: int) -> int:
        sent = self.sent.get((chat_id, message_id))
        if sent is not None and sent.media_group_id is not None:
            return min(
                other.message_id for other in self.messages(chat_id) if other.media_group_id == sent.media_group_id
            )
        album = self._album_of.get((chat_id, message_id))
        if album is not None:
            return min(other for (chat, other), group in self._album_of.items() if chat == chat_id and group == album)
        return message_id

    def _add_file(self, data: bytes, size: int) -> dict[str, Any]:
        file_id = f"file{next(self._ids)}"
        self._files[file_id] = (data, size)
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": size}

    async def _user_message(self, user: TgUser, fields: dict[str, Any], chat: dict[str, Any] | None) -> int:
        message = self._message(user, fields, chat or _private(user))
        message_id: int = message["message_id"]
        if "media_group_id" in fields:
            self._album_of[(message["chat"]["id"], message_id)] = fields["media_group_id"]
        await self._push({"message": message})
        return message_id

    def _message(self, user: TgUser, fields: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
        message_id = self._next_message_id(chat["id"])
        message = {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": _user(user), **fields}
        if str(fields.get("text", "")).startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(fields["text"].split()[0])}]
        return message

    async def _bot_membership(self, user: TgUser, old: str, new: str) -> None:
        """The bot's own membership of the user's private chat changed (``kicked``: blocked; ``member``: back)."""

        def member(status: str) -> dict[str, Any]:
            return {"user": BOT_USER, "status": status, **({"until_date": 0} if status == "kicked" else {})}

        change = {"chat": _private(user), "from": _user(user), "date": int(time.time())}
        await self._push({"my_chat_member": {**change, "old_chat_member": member(old), "new_chat_member": member(new)}})

    async def _push(self, update: dict[str, Any]) -> None:
        self._updates.append({"update_id": next(self._update_ids), **update})
        async with self._changed:
            self._changed.notify_all()


def _user(user: TgUser) -> dict[str, Any]:
    return {"id": user.id, "is_bot": False, "first_name": user.first_name}


def _private(user: TgUser) -> dict[str, Any]:
    return {"id": user.id, "type": "private", "first_name": user.first_name}


def _with(fields: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {**fields, **{name: value for name, value in optional.items() if value is not None}}
