"""What bot and worker need from blob storage (``BlobStorage``), its error, and the check every key passes."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Protocol

from pipeline.errors import StorageError

__all__ = ["BlobStorage", "StorageError", "checked_key"]

_SAFE_PART = re.compile(r"^[A-Za-z0-9._%-]+$")


def checked_key(key: str) -> PurePosixPath:
    """``key`` as a relative path of plain names; ValueError for anything that could escape its folder."""
    path = PurePosixPath(key)
    if (
        path.is_absolute()
        or not path.parts
        or any(not _SAFE_PART.match(part) or part in (".", "..") for part in path.parts)
    ):
        raise ValueError(f"storage key {key!r} is not a relative path of plain names")
    return path


class BlobStorage(Protocol):
    """What the bot and the worker need from storage; keys are '/'-separated relative paths."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> bool: ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def put_file(self, key: str, path: Path) -> None:
        """Store the file at ``path`` under ``key`` without holding it whole in memory (LoRA weights are 100+ MB)."""
        ...

    async def get_file(self, key: str, path: Path) -> None:
        """Write the blob ``key`` to ``path``, streamed; ``path`` appears whole or not at all. KeyError if absent."""
        ...

    async def aclose(self) -> None:
        """Release connections; the storage is not used afterwards."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A file path for ``key`` when storage is on this disk (lets the local chat show files), else None."""
        ...

    async def share_url(self, key: str, expires_s: int) -> str | None:
        """A link that downloads ``key`` for ``expires_s`` seconds without credentials (S3's presigned GET), or None
        where the storage has none to give (a local directory). The link is a bearer secret: never log it."""
        ...
