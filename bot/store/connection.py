"""The store's one aiosqlite connection: opening it (privacy pragmas, migrations) and the query helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import aiosqlite

from bot.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["Connection"]


class Connection:
    """One open connection; call ``open()`` (or use ``async with``) before anything else."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA foreign_keys = ON")
        # Deleted rows are overwritten with zeros, so an erased user's data does not linger in free pages.
        await self._db.execute("PRAGMA secure_delete = ON")
        await self._db.execute("PRAGMA journal_mode = WAL")
        await self._migrate()
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("Store used before open(): call `await store.open()` first")
        return self._db

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"database {self.path} has schema version {version}, newer than this code's {SCHEMA_VERSION}: "
                "upgrade headshot-bot"
            )
        for target in range(version, SCHEMA_VERSION):
            await self.db.executescript(f"BEGIN; {MIGRATIONS[target]} PRAGMA user_version = {target + 1}; COMMIT;")

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _one(self, sql: str, *params: Any) -> aiosqlite.Row | None:
        async with self.db.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _all(self, sql: str, *params: Any) -> list[aiosqlite.Row]:
        async with self.db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())
