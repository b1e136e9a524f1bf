"""Neutral types between the adapters and the core: platform objects never cross this line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Attachment",
    "Button",
    "ChatPort",
    "ChatRef",
    "ChatUnreachable",
    "IncomingMessage",
    "OutgoingImage",
    "Reply",
    "Undeliverable",
]


@dataclass(frozen=True)
class ChatRef:
    """Who wrote, and where. ``user_key`` (``platform:user_id``) namespaces all of a user's data."""

    platform: str
    user_id: str
    chat_id: str
    is_private: bool = True

    @property
    def user_key(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True)
class Attachment:
    """A file the user sent, already downloaded by the adapter (which enforces its platform's size limits)."""

    filename: str
    data: bytes = field(repr=False)  # never in reprs: selfies are biometric data and must not reach logs


@dataclass(frozen=True)
class IncomingMessage:
    chat: ChatRef
    text: str = ""
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Button:
    """A button under a reply; pressing it is the same as sending ``command`` (adapters map one to the other)."""

    label: str
    command: str


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class OutgoingImage:
    filename: str
    data: bytes = field(repr=False)
    caption: str = ""


class Undeliverable(Exception):
    """The platform refused a message for good (a file too big, an invalid image, a message gone): no retry helps.

    Ports raise it, chained to the platform's error, for the refusals they know to be permanent; any other exception
    from a port counts as transient, and the core tries again later.
    """


class ChatUnreachable(Undeliverable):
    """Nothing can reach this chat any more: the user blocked the bot, left, or the chat does not exist."""


class ChatPort(Protocol):
    """What the core needs from a chat platform. Message ids are strings on every platform.

    Failures: ``Undeliverable`` (or ``ChatUnreachable``) when the platform refused for good; anything else is transient.
    """

    platform: str

    @property
    def upload_limit_bytes(self) -> int:
        """The largest file ``send_files`` may post on this platform; the core splits or refuses above it."""
        ...

    async def send(self, chat_id: str, reply: Reply) -> str:
        """Post a text reply; returns its message id."""
        ...

    async def edit(self, chat_id: str, message_id: str, reply: Reply, *, final: bool = False) -> None:
        """Replace the text of a message posted earlier (progress updates). Edits may be throttled, but a ``final``
        one (the last text the message gets) goes out now, and its failure reaches the caller."""
        ...

    async def send_image(self, chat_id: str, image: OutgoingImage, buttons: Sequence[Button] = ()) -> str:
        """Post one image as a message of its own, its caption and ``buttons`` on it, so a reaction or a button
        names exactly this image; returns its message id. One message per call: the caller records each image as
        soon as it is posted, so a failure at image k of n re-posts none of the first k-1."""
        ...

    async def send_files(self, chat_id: str, files: Sequence[OutgoingImage]) -> None:
        """Post originals as files (``/favorites``), uncompressed where the platform compresses photos."""
        ...
