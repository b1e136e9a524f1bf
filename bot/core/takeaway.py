"""Take it home: ``/favorites zip`` (the favorites' originals in ZIP files that fit the chat's upload limit) and
``/export`` (the trained LoRA as diffusers and kohya safetensors files)."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Sequence

from bot.core import texts
from bot.core.context import CoreContext
from bot.core.session import state_of
from bot.core.types import ChatPort, ChatRef, OutgoingImage, Reply
from bot.store.schema import SessionRow
from jobs.contract.keys import export_key
from pipeline.errors import SessionError
from pipeline.lora_export import half_precision, to_kohya

__all__ = ["export_lora", "favorites_zip", "zip_parts"]

# How long an /export download link works: long enough to open it on a phone later, short for a bearer link.
EXPORT_LINK_S = 3600
# A stored member costs its local header (30 bytes + name) and central directory entry (46 + name); the end record
# 22. ZIP64 extras only appear past 4 GiB, beyond every chat's limit.
_ENTRY_BYTES = 30 + 46
_END_BYTES = 22


def zip_parts(files: Sequence[OutgoingImage], limit: int, stem: str) -> list[OutgoingImage]:
    """``files`` in as few ZIP files of at most ``limit`` bytes as their order allows, each a whole archive that
    opens on its own. Stored, not deflated: PNGs are compressed already, and stored sizes are known in advance.

    A file too big for any part goes alone in one, which the port then refuses with its own note.
    """
    groups: list[list[OutgoingImage]] = []
    size = _END_BYTES
    for item in files:
        cost = _ENTRY_BYTES + 2 * len(item.filename.encode()) + len(item.data)
        if not groups or size + cost > limit:
            groups.append([])
            size = _END_BYTES
        groups[-1].append(item)
        size += cost
    names = (
        [f"{stem}.zip"] if len(groups) == 1 else [f"{stem}-{n}-of-{len(groups)}.zip" for n in range(1, 1 + len(groups))]
    )
    return [OutgoingImage(name, _zip(group)) for name, group in zip(names, groups, strict=True)]


def _zip(files: Sequence[OutgoingImage]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for item in files:
            archive.writestr(item.filename, item.data)
    return buffer.getvalue()


async def favorites_zip(core: CoreContext, chat: ChatRef, port: ChatPort) -> None:
    """``/favorites zip``: the favorites' original bytes, zipped into parts each within the port's upload limit."""
    favorites = await core.store.favorites(chat.user_key)
    if not favorites:
        raise SessionError(texts.FAVORITES_EMPTY)
    files = [
        OutgoingImage(row.storage_key.rsplit("/", 1)[-1], await core.storage.get(row.storage_key)) for row in favorites
    ]
    parts = await asyncio.to_thread(zip_parts, files, port.upload_limit_bytes, "favorite-headshots")
    where = "one ZIP file" if len(parts) == 1 else f"{len(parts)} ZIP files"
    await port.send(chat.chat_id, Reply(texts.FAVORITES_ZIP_SENT.format(count=len(files), parts=where)))
    await port.send_files(chat.chat_id, parts)


async def export_lora(core: CoreContext, chat: ChatRef, session: SessionRow | None, port: ChatPort) -> None:
    """``/export``: the session's LoRA as diffusers saved it and as a kohya copy, with a note on loading each."""
    # 1. Find the current session's model.
    if session is None or not state_of(session).has_model or session.lora_key is None:
        raise SessionError(texts.EXPORT_NEEDS_MODEL)
    try:
        diffusers_file = await core.storage.get(session.lora_key)
    except KeyError:  # erased by retention a moment ago, before the row followed
        raise SessionError(texts.EXPORT_GONE) from None

    # 2. Convert off the event loop (a few hundred keys, tens of megabytes copied), then 3. send what fits.
    kohya_file = await asyncio.to_thread(to_kohya, diffusers_file)
    diffusers_file = await asyncio.to_thread(half_precision, diffusers_file)
    stem = f"headshot-lora-{session.id}"
    files = [
        OutgoingImage(f"{stem}-diffusers.safetensors", diffusers_file),
        OutgoingImage(f"{stem}-kohya.safetensors", kohya_file),
    ]
    note = texts.EXPORT_SENT.format(
        diffusers=files[0].filename, kohya=files[1].filename, stem=f"{stem}-kohya", phrase=session.subject.phrase()
    )
    await port.send(chat.chat_id, Reply(note))
    limit = port.upload_limit_bytes
    for item in files:
        if len(item.data) <= limit:
            await port.send_files(chat.chat_id, [item])
            continue
        # A model file cut in parts loads nowhere: a download link where the storage can sign one (S3), else say so.
        size, most = texts.megabytes(len(item.data)), texts.megabytes(limit)
        key = export_key(chat.user_key, session.id, item.filename)
        link = await core.storage.share_url(key, EXPORT_LINK_S)  # signed locally: the blob need not exist yet
        if link is None:
            await port.send(chat.chat_id, Reply(texts.EXPORT_TOO_BIG.format(name=item.filename, size=size, limit=most)))
            continue
        await core.storage.put(key, item.data)
        hours = EXPORT_LINK_S // 3600
        reply = texts.EXPORT_LINK.format(name=item.filename, size=size, limit=most, link=link, hours=hours)
        await port.send(chat.chat_id, Reply(reply))
