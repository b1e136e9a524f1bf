"""Blob storage shared by the bot and the workers: selfies, LoRA weights and outputs under ``users/<user>/``.

A local directory by default; an S3-compatible bucket plugs in behind the same ``BlobStorage`` protocol.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import quote

__all__ = ["BlobStorage", "LocalStorage", "user_prefix"]

_SAFE_PART = re.compile(r"^[A-Za-z0-9._%-]+$")


def user_prefix(user_key: str) -> str:
    """The storage folder of one user. Quoting makes it injective, so no user key can name another's folder."""
    if not user_key:
        raise ValueError("user_key is empty; expected 'platform:user_id'")
    return f"users/{quote(user_key, safe='')}/"


def _checked(key: str) -> PurePosixPath:
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

    def local_path(self, key: str) -> Path | None:
        """A file path for ``key`` when storage is on this disk (lets the local chat show files), else None."""
        ...


class LocalStorage:
    """Blobs as files under one root folder; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def local_path(self, key: str) -> Path:
        return self.root.joinpath(*_checked(key).parts)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, self.local_path(key), data)

    async def get(self, key: str) -> bytes:
        path = self.local_path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise KeyError(f"no blob stored under {key!r}") from None

    async def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    async def delete(self, key: str) -> bool:
        path = self.local_path(key)
        existed = path.is_file()
        path.unlink(missing_ok=True)
        return existed

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under ``prefix`` (a folder key ending in '/'); returns how many files went."""
        folder = self.local_path(prefix.rstrip("/"))
        return await asyncio.to_thread(self._delete_tree, folder)

    async def list_blobs(self, prefix: str) -> list[tuple[str, float]]:
        """``(key, last modified as a Unix time)`` of every blob under ``prefix``, for retention."""
        return await asyncio.to_thread(self._list, self.local_path(prefix.rstrip("/")))

    def _list(self, folder: Path) -> list[tuple[str, float]]:
        if not folder.is_dir():
            return []
        return [
            (path.relative_to(self.root).as_posix(), path.stat().st_mtime)
            for path in sorted(folder.rglob("*"))
            if path.is_file() and not path.name.startswith(".tmp-")  # a write in progress is not a blob yet
        ]

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _delete_tree(folder: Path) -> int:
        if not folder.exists():
            return 0
        count = sum(1 for item in folder.rglob("*") if item.is_file())
        shutil.rmtree(folder)
        return count
