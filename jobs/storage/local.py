"""Blob storage in a local folder: the default when bot and worker share a disk; writes are atomic."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from jobs.storage.base import checked_key

__all__ = ["LocalStorage"]


class LocalStorage:
    """Blobs as files under one root folder; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def local_path(self, key: str) -> Path:
        return self.root.joinpath(*checked_key(key).parts)

    async def share_url(self, key: str, expires_s: int) -> None:
        """No link: nothing serves this directory to the users' phones."""
        return None

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
