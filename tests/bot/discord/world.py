"""What the Discord stand-in keeps (users, DM channels, the bot's messages, interaction responses, attachments) and
what its users do: DM messages with attachments, slash commands, button presses, reactions.

``standin.DiscordStandin`` serves it to the real discord.py over REST, the gateway websocket and a CDN route.
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

APP_ID = 7_000_001
BOT_USER = {
    "id": str(APP_ID),
    "username": "Headshots",
    "discriminator": "0",
    "avatar": None,
    "bot": True,
    "global_name": "Headshots",
    "flags": 0,
}
UPLOAD_LIMIT = 10 * 2**20
DM, PRIVATE = 1, 2  # interaction contexts: the bot's DM, another private chat (user installs)


@dataclass(frozen=True)
class DcUser:
    id: int
    name: str

    @property
    def dm(self) -> int:
        """The id of this user's DM channel with the bot."""
        return self.id + 500_000

    def json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name.lower(),
            "discriminator": "0",
            "avatar": None,
            "global_name": self.name,
        }


@dataclass
class Sent:
    """A message as the user's app shows it now; ``history`` is every content it had, with when."""

    channel_id: int
    id: int
    content: str
    components: list[dict[str, Any]] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    history: list[tuple[float, str]] = field(default_factory=list)
    ephemeral: bool = False
    interaction_token: str | None = None

    @property
    def buttons(self) -> dict[str, str]:
        """Label -> custom_id."""
        return {item["label"]: item["custom_id"] for row in self.components for item in row["components"]}


@dataclass
class Call:
    method: str
    path: str
    body: Any
    at: float
    status: int = 200


class DiscordWorld:
    def __init__(self, cdn_base: Callable[[], str]) -> None:
        self.calls: list[Call] = []
        self.sent: dict[int, Sent] = {}
        self.attachments: dict[int, tuple[str, bytes]] = {}
        self.downloads: list[int] = []
        self.dispatched: list[tuple[str, dict[str, Any]]] = []
        self.user_messages: dict[int, list[dict[str, Any]]] = {}  # DM channel id -> what its user wrote there
        self._cdn_base = cdn_base
        self._ids = itertools.count(1_100_000_000_000_000_000)
        self._changed = asyncio.Condition()
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    def next_id(self) -> int:
        return next(self._ids)

    # What the test does as Discord users.

    async def send_dm(
        self,
        user: DcUser,
        content: str = "",
        files: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
        *,
        sizes: dict[str, int] | None = None,
        guild_id: int | None = None,
    ) -> int:
        """A message in the user's DM (or, with ``guild_id``, in a server channel); files are (name, bytes, type)."""
        message_id = self.next_id()
        sizes = sizes or {}
        data: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(user.dm if guild_id is None else guild_id + 1),
            "type": 0,
            "content": content,
            "author": user.json(),
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "embeds": [],
            "attachments": [self.add_attachment(name, blob, kind, sizes.get(name)) for name, blob, kind in files],
        }
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        else:
            self.user_messages.setdefault(user.dm, []).append(data)  # in the DM's history, delivered live or not
        await self.dispatch("MESSAGE_CREATE", data)
        return message_id

    async def command(
        self,
        user: DcUser,
        name: str,
        options: dict[str, Any] | None = None,
        files: list[tuple[str, bytes, str]] = (),
        *,
        guild_id: int | None = None,  # type: ignore[assignment]
        context: int = DM,
    ) -> int:
        """A slash command; ``files`` fill the attachment options photo1, photo2, ..."""
        attachments = [self.add_attachment(file_name, data, kind) for file_name, data, kind in files]
        values = [
            {"name": key, "type": 4 if isinstance(value, int) else 3, "value": value}
            for key, value in (options or {}).items()
        ]
        values += [{"name": f"photo{n}", "type": 11, "value": item["id"]} for n, item in enumerate(attachments, 1)]
        data = {
            "id": "900",
            "name": name,
            "type": 1,
            "options": values,
            "resolved": {"attachments": {item["id"]: item for item in attachments}},
        }
        return await self._interaction(user, 2, data, guild_id=guild_id, context=context)

    async def press(self, user: DcUser, message: Sent, label: str, *, guild_id: int | None = None) -> int:
        data = {"custom_id": message.buttons[label], "component_type": 2}
        return await self._interaction(user, 3, data, message=self.message_json(message), guild_id=guild_id)

    async def react(self, user: DcUser, message_id: int, emoji: str = "⭐") -> None:
        data = {
            "user_id": str(user.id),
            "channel_id": str(user.dm),
            "message_id": str(message_id),
            "emoji": {"id": None, "name": emoji},
            "type": 0,
            "burst": False,
        }
        await self.dispatch("MESSAGE_REACTION_ADD", data)

    # What the test reads back.

    def messages(self, user: DcUser) -> list[Sent]:
        return [sent for _, sent in sorted(self.sent.items()) if sent.channel_id == user.dm and not sent.ephemeral]

    def ephemeral(self, user: DcUser) -> list[Sent]:
        return [sent for _, sent in sorted(self.sent.items()) if sent.ephemeral and sent.channel_id == user.id]

    def texts(self, user: DcUser) -> str:
        return "\n".join(sent.content for sent in self.messages(user))

    def with_text(self, user: DcUser, fragment: str) -> Sent | None:
        found = [sent for sent in self.messages(user) if fragment in sent.content]
        return found[-1] if found else None

    def images(self, user: DcUser) -> list[Sent]:
        return [sent for sent in self.messages(user) if sent.files]

    def called(self, method: str, path_part: str) -> list[Call]:
        return [call for call in self.calls if call.method == method and path_part in call.path]

    async def wait_for(self, probe: Callable[[], T | None], timeout_s: float = 60, what: str = "") -> T:
        """Wait until ``probe()`` returns something truthy (re-checked after every call the bot makes)."""
        return await wait_on(self._changed, probe, timeout_s, what)

    # Bookkeeping.

    def add_attachment(self, name: str, data: bytes, kind: str, size: int | None = None) -> dict[str, Any]:
        attachment_id = self.next_id()
        self.attachments[attachment_id] = (name, data)
        url = f"{self._cdn_base()}/attachments/{attachment_id}/{name}"
        return {
            "id": str(attachment_id),
            "filename": name,
            "size": size or len(data),
            "url": url,
            "proxy_url": url,
            "content_type": kind,
        }

    def post(
        self,
        channel_id: int,
        content: str,
        components: list[dict[str, Any]],
        files: list[tuple[str, bytes]],
        **extra: Any,
    ) -> Sent:
        sent = Sent(channel_id, self.next_id(), content, components, files, [(time.monotonic(), content)], **extra)
        self.sent[sent.id] = sent
        return sent

    def message_json(self, sent: Sent) -> dict[str, Any]:
        return {
            "id": str(sent.id),
            "channel_id": str(sent.channel_id),
            "type": 0,
            "content": sent.content,
            "author": BOT_USER,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "embeds": [],
            "components": sent.components,
            "flags": 64 if sent.ephemeral else 0,
            "attachments": [
                {"id": str(index), "filename": name, "size": len(data), "url": "http://x/y", "proxy_url": "http://x/y"}
                for index, (name, data) in enumerate(sent.files)
            ],
        }

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.dispatched.append((event, data))
        await self._outbox.put((event, data))

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _interaction(
        self,
        user: DcUser,
        kind: int,
        data: dict[str, Any],
        *,
        message: dict[str, Any] | None = None,
        guild_id: int | None = None,
        context: int = DM,
    ) -> int:
        interaction_id = self.next_id()
        channel = (
            {"id": str(user.dm), "type": 1, "recipients": [user.json()]}
            if context == DM
            else {"id": str(user.id + 900_000), "type": 1, "recipients": [user.json()]}
        )
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(APP_ID),
            "type": kind,
            "data": data,
            "token": f"tok{interaction_id}",
            "version": 1,
            "attachment_size_limit": UPLOAD_LIMIT,
            "channel_id": channel["id"],
            "channel": channel,
            "context": context,
            "locale": "en-US",
            "app_permissions": "0",
            "entitlements": [],
            "authorizing_integration_owners": {"1": str(user.id)},
        }
        if guild_id is not None:
            channel = {"id": str(guild_id + 1), "type": 0, "guild_id": str(guild_id), "name": "general", "position": 0}
            payload.update(
                guild_id=str(guild_id),
                channel=channel,
                channel_id=channel["id"],
                context=0,
                member={
                    "user": user.json(),
                    "roles": [],
                    "joined_at": _now(),
                    "deaf": False,
                    "mute": False,
                    "permissions": "0",
                    "flags": 0,
                },
            )
        else:
            payload["user"] = user.json()
        if message is not None:
            payload["message"] = message
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction_id


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
