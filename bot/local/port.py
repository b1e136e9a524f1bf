"""The local terminal chat's side of ``ChatPort``: numbered messages printed, images written to a folder."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bot.core.types import Button, OutgoingImage, Reply

__all__ = ["LocalChatPort", "PostedMessage"]

SHEET_TILE = 256


@dataclass
class PostedMessage:
    """One bot message as the terminal shows it; ``image_path`` is set for headshots."""

    number: int
    text: str
    image_path: Path | None = None
    edits: int = 0


class LocalChatPort:
    """Messages are numbered #1, #2, ... so a user can react with ``react <number>``."""

    platform = "local"
    # Files land in a folder, where no platform limit applies; 2 GiB keeps a ZIP part within what zipfile writes.
    upload_limit_bytes = 2**31

    def __init__(self, out_dir: Path, write: Callable[[str], None] = print) -> None:
        self.out_dir = out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.write = write
        self.messages: dict[int, PostedMessage] = {}
        self.headshots: list[Path] = []
        self.files: list[Path] = []
        self.changed = asyncio.Condition()

    def _post(self, text: str, image_path: Path | None = None) -> str:
        number = len(self.messages) + 1
        self.messages[number] = PostedMessage(number, text, image_path)
        return str(number)

    @staticmethod
    def _render(reply: Reply) -> str:
        lines = [reply.text]
        lines += [f"   [{button.label}] -> type: {button.command}" for button in reply.buttons]
        return "\n".join(lines)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def send(self, chat_id: str, reply: Reply) -> str:
        message_id = self._post(reply.text)
        self.write(f"bot #{message_id}: {self._render(reply)}")
        await self._notify()
        return message_id

    async def edit(self, chat_id: str, message_id: str, reply: Reply, *, final: bool = False) -> None:
        message = self.messages.get(int(message_id))
        if message is None:
            raise KeyError(f"no message #{message_id} to edit")
        message.text = reply.text
        message.edits += 1
        # A terminal cannot rewrite an old line, so an edit prints the message again, marked as an update.
        self.write(f"bot #{message_id} (updated): {self._render(reply)}")
        await self._notify()

    async def send_image(self, chat_id: str, image: OutgoingImage, buttons: Sequence[Button] = ()) -> str:
        number = len(self.messages) + 1
        path = self.out_dir / f"{number:03d}-{image.filename}"
        await asyncio.to_thread(path.write_bytes, image.data)
        message_id = self._post(image.caption, path)
        self.headshots.append(path)
        taps = "".join(f"   [{button.label}] -> type: {button.command}" for button in buttons)
        self.write(f"bot #{number}: [image] {image.caption} -> {path}{taps}   (or: react {number})")
        sheet = await asyncio.to_thread(write_contact_sheet, self.headshots, self.out_dir / "contact-sheet.png")
        self.write(f"        contact sheet of all {len(self.headshots)} headshots: {sheet}")
        await self._notify()
        return message_id

    async def send_files(self, chat_id: str, files: Sequence[OutgoingImage]) -> None:
        folder = self.out_dir / "favorites"
        folder.mkdir(exist_ok=True)
        for item in files:
            path = folder / item.filename
            await asyncio.to_thread(path.write_bytes, item.data)
            self.files.append(path)
            self.write(f"bot: [file] {path}")
        await self._notify()


def write_contact_sheet(paths: Sequence[Path], target: Path, columns: int = 4) -> Path:
    """All headshots in one PNG grid, each tile ``SHEET_TILE`` px high, so a run is judged at a glance."""
    images = [Image.open(io.BytesIO(path.read_bytes())).convert("RGB") for path in paths]
    tiles = [image.resize((round(SHEET_TILE * image.width / image.height), SHEET_TILE)) for image in images]
    width = max(tile.width for tile in tiles)
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * width, rows * SHEET_TILE), "white")
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * width, (index // columns) * SHEET_TILE))
    sheet.save(target)
    return target
