"""The local terminal chat frontend: typed lines in, neutral messages and reactions out. No token needed.

/train ~/selfies          attach every file in a folder (or name files) with any command
~/selfies/me1.jpg         a path alone attaches it too
react 12                  react to message #12 (a headshot) to keep it as a favorite
"""

from __future__ import annotations

import shlex
from pathlib import Path

from bot.core.service import HeadshotService
from bot.core.types import Attachment, ChatRef, IncomingMessage
from bot.local.port import LocalChatPort

__all__ = ["LocalChat", "parse_line"]

MAX_FILE_BYTES = 50 * 1024 * 1024  # the largest upload the chat platforms take; keeps the local chat honest


def _expand(token: str) -> list[Path] | None:
    """Files named by ``token`` when it is an existing file or folder; None when it is just a word."""
    if token.startswith("/") and "/" not in token[1:]:
        return None  # "/train", "/": a command, even where a folder of that name exists ("/" always does)
    try:
        path = Path(token).expanduser()
        if path.is_file():
            return [path]
        if path.is_dir():
            return sorted(item for item in path.iterdir() if item.is_file() and not item.name.startswith("."))
    except (OSError, ValueError, RuntimeError):  # a word too long for a file name, a NUL byte, an unknown ~user
        pass
    return None


def parse_line(line: str) -> tuple[str, list[Path]] | int:
    """A typed line as (text, attached files), or the message number of a ``react N`` / ``+N``."""
    stripped = line.strip()
    words = stripped.split()
    if len(words) == 2 and words[0].lower() == "react" and words[1].lstrip("#").isdecimal():
        return int(words[1].lstrip("#"))
    if len(words) == 1 and words[0].startswith("+") and words[0][1:].isdecimal():
        return int(words[0][1:])
    try:
        tokens = shlex.split(stripped)
    except ValueError:  # an unbalanced quote: take the line as plain text
        tokens = stripped.split()
    text_words: list[str] = []
    files: list[Path] = []
    for token in tokens:
        expanded = _expand(token)
        if expanded is None:
            text_words.append(token)
        else:
            files.extend(expanded)
    return " ".join(text_words), files


class LocalChat:
    """One local user talking to the core through ``LocalChatPort``."""

    def __init__(
        self, service: HeadshotService, port: LocalChatPort, user: str = "me", *, group: str | None = None
    ) -> None:
        """``group`` names a group chat to speak in instead of the private one (the core refuses groups)."""
        self.service = service
        self.port = port
        self.chat = ChatRef(platform="local", user_id=user, chat_id=group or user, is_private=group is None)

    async def say(self, line: str) -> None:
        """Handle one typed line as the user would type it."""
        parsed = parse_line(line)
        if isinstance(parsed, int):
            posted = self.port.messages.get(parsed)
            if posted is None or posted.image_path is None:
                # The core ignores reactions on anything but a headshot, as chat apps send many; a typed command
                # deserves a word, so the terminal (like a chat app's UI) says it here.
                self.port.write(f"(react works on headshots: #{parsed} is not one; their numbers end in .png lines)")
                return
            await self.service.handle_reaction(self.chat, str(parsed), self.port)
            return
        text, files = parsed
        attachments = []
        for path in files:
            if path.stat().st_size > MAX_FILE_BYTES:
                self.port.write(f"(not sent: {path} is over {MAX_FILE_BYTES // 2**20} MB, the chat platforms' limit)")
                continue
            attachments.append(Attachment(path.name, path.read_bytes()))
        if files and not attachments and not text:
            return  # nothing left to send, as a chat app sends nothing when its only file is refused
        await self.service.handle_message(IncomingMessage(self.chat, text, tuple(attachments)), self.port)
