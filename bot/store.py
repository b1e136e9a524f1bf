"""The bot's SQLite store (aiosqlite): users, DM sessions and their state, selfies, jobs, images, favorites.

Every query names the user's key, so one user's command can never read or change another's rows.
The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS[n]`` takes the database from n to n+1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

__all__ = ["ImageRow", "JobRow", "SessionRow", "Store"]

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE users (
        user_key TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_key TEXT NOT NULL REFERENCES users(user_key) ON DELETE CASCADE,
        state TEXT NOT NULL,
        train_attempt INTEGER NOT NULL DEFAULT 0,
        lora_key TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions(user_key, id);
    CREATE TABLE selfies (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        user_key TEXT NOT NULL,
        storage_key TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        user_key TEXT NOT NULL REFERENCES users(user_key) ON DELETE CASCADE,
        session_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        style TEXT,
        progress_message_id TEXT,
        created_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE TABLE images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        user_key TEXT NOT NULL REFERENCES users(user_key) ON DELETE CASCADE,
        storage_key TEXT NOT NULL,
        seed INTEGER NOT NULL,
        message_id TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX images_by_message ON images(user_key, message_id);
    CREATE TABLE favorites (
        user_key TEXT NOT NULL REFERENCES users(user_key) ON DELETE CASCADE,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        PRIMARY KEY (user_key, image_id)
    );
    CREATE TABLE delivered_events (
        event_id TEXT PRIMARY KEY,
        delivered_at REAL NOT NULL
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class SessionRow:
    id: int
    user_key: str
    state: str
    train_attempt: int
    lora_key: str | None


@dataclass(frozen=True)
class JobRow:
    job_id: str
    user_key: str
    session_id: int
    kind: str
    status: str
    style: str | None
    progress_message_id: str | None


@dataclass(frozen=True)
class ImageRow:
    id: int
    job_id: str
    storage_key: str
    seed: int
    message_id: str | None


class Store:
    """One open connection; call ``open()`` (or use ``async with``) before anything else."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> Store:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA foreign_keys = ON")
        await self._db.execute("PRAGMA journal_mode = WAL")
        await self._migrate()
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Store:
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

    # Users and sessions.

    async def ensure_user(self, user_key: str, platform: str, chat_id: str) -> None:
        await self.db.execute(
            "INSERT INTO users (user_key, platform, chat_id, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(user_key) DO UPDATE SET chat_id = excluded.chat_id",
            (user_key, platform, chat_id, time.time()),
        )
        await self.db.commit()

    async def chat_of(self, user_key: str) -> str | None:
        row = await self._one("SELECT chat_id FROM users WHERE user_key = ?", user_key)
        return None if row is None else str(row["chat_id"])

    async def current_session(self, user_key: str) -> SessionRow | None:
        row = await self._one(
            "SELECT id, user_key, state, train_attempt, lora_key FROM sessions WHERE user_key = ? "
            "ORDER BY id DESC LIMIT 1",
            user_key,
        )
        return None if row is None else SessionRow(*row)

    async def new_session(self, user_key: str, state: str) -> SessionRow:
        now = time.time()
        cursor = await self.db.execute(
            "INSERT INTO sessions (user_key, state, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (user_key, state, now, now),
        )
        await self.db.commit()
        return SessionRow(int(cursor.lastrowid or 0), user_key, state, 0, None)

    async def update_session(self, user_key: str, session_id: int, **fields: Any) -> None:
        allowed = {"state", "train_attempt", "lora_key"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"update_session fields must be among {sorted(allowed)}, got {sorted(fields)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        await self.db.execute(
            f"UPDATE sessions SET {assignments}, updated_at = ? WHERE id = ? AND user_key = ?",
            (*fields.values(), time.time(), session_id, user_key),
        )
        await self.db.commit()

    # Selfies.

    async def add_selfie(self, user_key: str, session_id: int, storage_key: str, width: int, height: int) -> None:
        await self.db.execute(
            "INSERT INTO selfies (session_id, user_key, storage_key, width, height, created_at) VALUES (?,?,?,?,?,?)",
            (session_id, user_key, storage_key, width, height, time.time()),
        )
        await self.db.commit()

    async def selfie_keys(self, user_key: str, session_id: int) -> list[str]:
        rows = await self._all(
            "SELECT storage_key FROM selfies WHERE user_key = ? AND session_id = ? ORDER BY id", user_key, session_id
        )
        return [str(row[0]) for row in rows]

    # Jobs.

    async def add_job(self, job: JobRow) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO jobs (job_id, user_key, session_id, kind, status, style, progress_message_id, "
            "created_at) VALUES (?,?,?,?,?,?,?,?)",
            (job.job_id, job.user_key, job.session_id, job.kind, job.status, job.style, job.progress_message_id,
             time.time()),
        )  # fmt: skip
        await self.db.commit()

    async def job(self, user_key: str, job_id: str) -> JobRow | None:
        row = await self._one(
            "SELECT job_id, user_key, session_id, kind, status, style, progress_message_id FROM jobs "
            "WHERE user_key = ? AND job_id = ?",
            user_key,
            job_id,
        )
        return None if row is None else JobRow(*row)

    async def active_job(self, user_key: str) -> JobRow | None:
        row = await self._one(
            "SELECT job_id, user_key, session_id, kind, status, style, progress_message_id FROM jobs "
            "WHERE user_key = ? AND status IN ('queued', 'running') ORDER BY created_at DESC LIMIT 1",
            user_key,
        )
        return None if row is None else JobRow(*row)

    async def open_jobs(self) -> list[JobRow]:
        """Every queued or running job of every user: the watchdog's round (the one query across users)."""
        rows = await self._all(
            "SELECT job_id, user_key, session_id, kind, status, style, progress_message_id FROM jobs "
            "WHERE status IN ('queued', 'running') ORDER BY created_at"
        )
        return [JobRow(*row) for row in rows]

    async def count_jobs(self, user_key: str, session_id: int, kind: str) -> int:
        row = await self._one(
            "SELECT COUNT(*) FROM jobs WHERE user_key = ? AND session_id = ? AND kind = ?", user_key, session_id, kind
        )
        return int(row[0]) if row else 0

    async def update_job(self, user_key: str, job_id: str, *, status: str | None = None,
                         progress_message_id: str | None = None) -> None:  # fmt: skip
        if status is not None:
            finished = time.time() if status in ("done", "failed", "cancelled") else None
            await self.db.execute(
                "UPDATE jobs SET status = ?, finished_at = ? WHERE user_key = ? AND job_id = ?",
                (status, finished, user_key, job_id),
            )
        if progress_message_id is not None:
            await self.db.execute(
                "UPDATE jobs SET progress_message_id = ? WHERE user_key = ? AND job_id = ?",
                (progress_message_id, user_key, job_id),
            )
        await self.db.commit()

    # Images and favorites.

    async def add_image(self, user_key: str, job_id: str, storage_key: str, seed: int, message_id: str) -> int:
        cursor = await self.db.execute(
            "INSERT INTO images (job_id, user_key, storage_key, seed, message_id, created_at) VALUES (?,?,?,?,?,?)",
            (job_id, user_key, storage_key, seed, message_id, time.time()),
        )
        await self.db.commit()
        return int(cursor.lastrowid or 0)

    async def image_by_message(self, user_key: str, message_id: str) -> ImageRow | None:
        row = await self._one(
            "SELECT id, job_id, storage_key, seed, message_id FROM images WHERE user_key = ? AND message_id = ?",
            user_key,
            message_id,
        )
        return None if row is None else ImageRow(*row)

    async def images(self, user_key: str) -> list[ImageRow]:
        rows = await self._all(
            "SELECT id, job_id, storage_key, seed, message_id FROM images WHERE user_key = ? ORDER BY id", user_key
        )
        return [ImageRow(*row) for row in rows]

    async def add_favorite(self, user_key: str, image_id: int) -> bool:
        """True when newly marked; False when it already was a favorite."""
        cursor = await self.db.execute(
            "INSERT OR IGNORE INTO favorites (user_key, image_id, created_at) "
            "SELECT ?, id, ? FROM images WHERE id = ? AND user_key = ?",
            (user_key, time.time(), image_id, user_key),
        )
        await self.db.commit()
        return cursor.rowcount > 0

    async def remove_favorite(self, user_key: str, image_id: int) -> bool:
        cursor = await self.db.execute(
            "DELETE FROM favorites WHERE user_key = ? AND image_id = ?", (user_key, image_id)
        )
        await self.db.commit()
        return cursor.rowcount > 0

    async def favorites(self, user_key: str) -> list[ImageRow]:
        rows = await self._all(
            "SELECT i.id, i.job_id, i.storage_key, i.seed, i.message_id FROM favorites f "
            "JOIN images i ON i.id = f.image_id WHERE f.user_key = ? ORDER BY f.created_at",
            user_key,
        )
        return [ImageRow(*row) for row in rows]

    # Delivery bookkeeping and deletion.

    async def was_delivered(self, event_id: str) -> bool:
        return await self._one("SELECT 1 FROM delivered_events WHERE event_id = ?", event_id) is not None

    async def mark_delivered(self, event_id: str) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO delivered_events (event_id, delivered_at) VALUES (?, ?)", (event_id, time.time())
        )
        await self.db.commit()

    async def delete_user(self, user_key: str) -> None:
        """Forget a user: every row that names them goes (sessions, selfies, jobs, images, favorites)."""
        await self.db.execute("DELETE FROM selfies WHERE user_key = ?", (user_key,))
        await self.db.execute("DELETE FROM users WHERE user_key = ?", (user_key,))
        await self.db.commit()
