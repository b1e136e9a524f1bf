"""Blob storage shared by the bot and the workers: selfies, LoRA weights and outputs under ``users/<user>/``.

A local directory by default; an S3-compatible bucket (``jobs/storage/s3.py``) behind the same ``BlobStorage``
protocol when bot and workers run on different hosts. ``open_storage(settings)`` picks one.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

if TYPE_CHECKING:
    from jobs.settings import Settings

__all__ = ["BlobStorage", "LocalStorage", "StorageError", "checked_key", "open_storage", "user_prefix"]

_SAFE_PART = re.compile(r"^[A-Za-z0-9._%-]+$")


def user_prefix(user_key: str) -> str:
    """The storage folder of one user. Quoting makes it injective, so no user key can name another's folder."""
    if not user_key:
        raise ValueError("user_key is empty; expected 'platform:user_id'")
    return f"users/{quote(user_key, safe='')}/"


class StorageError(RuntimeError):
    """Storage is unreachable or misconfigured (an infrastructure fault, not the user's); the text says what to set."""


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


class LocalStorage:
    """Blobs as files under one root folder; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def local_path(self, key: str) -> Path:
        return self.root.joinpath(*checked_key(key).parts)

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

    async def put_file(self, key: str, path: Path) -> None:
        await asyncio.to_thread(self._copy_atomic, path, self.local_path(key))

    async def get_file(self, key: str, path: Path) -> None:
        try:
            await asyncio.to_thread(self._copy_atomic, self.local_path(key), path)
        except FileNotFoundError:
            raise KeyError(f"no blob stored under {key!r}") from None

    async def aclose(self) -> None:
        return None

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
    def _copy_atomic(source: Path, target: Path) -> None:
        if not source.is_file():  # checked first, so a missing blob leaves no folder behind at the target
            raise FileNotFoundError(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
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


async def open_storage(settings: Settings) -> BlobStorage:
    """The storage ``settings`` name, connected and checked; the caller closes it with ``aclose()``."""
    if settings.storage_backend == "s3":
        from jobs.storage.s3 import S3Storage  # aiobotocore loads only where S3 is used

        assert settings.s3_bucket is not None  # Settings refuses storage_backend='s3' without a bucket
        storage = S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key.get_secret_value()
            if settings.s3_secret_access_key
            else None,
            prefix=settings.s3_prefix,
        )
        return await storage.open()
    return LocalStorage(settings.resolved_storage_dir)
