"""The bot's SQLite store (aiosqlite): users, DM sessions and their state, selfies, jobs, images, favorites.

Every query names the user's key, so one user's command can never read or change another's rows.
The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS[n]`` takes the database from n to n+1.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bot.store.gallery import GalleryRows
from bot.store.jobs import JobRows
from bot.store.schema import (
    SelfieRow,
    SessionRow,
    SessionState,
    selfie_facts,
)
from pipeline.selfies.intake import SelfieFacts
from pipeline.subject import Subject

__all__ = ["Store"]


class Store(GalleryRows, JobRows):
    """One open connection; call ``open()`` (or use ``async with``) before anything else."""

    # Users and sessions.

    async def ensure_user(self, user_key: str, platform: str, chat_id: str) -> None:
        await self.db.execute(
            "INSERT INTO users (user_key, platform, chat_id, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(user_key) DO UPDATE SET chat_id = excluded.chat_id, left_at = NULL",
            (user_key, platform, chat_id, time.time()),
        )
        await self.db.commit()

    async def mark_left(self, user_key: str, *, left: bool = True) -> bool:
        """The user left the chat (blocked the bot), or, with ``left=False``, came back. True when they have a row."""
        cursor = await self.db.execute(
            "UPDATE users SET left_at = ? WHERE user_key = ?", (time.time() if left else None, user_key)
        )
        await self.db.commit()
        return cursor.rowcount > 0

    async def has_left(self, user_key: str) -> bool:
        _, left = await self.chat_and_left(user_key)
        return left

    async def chat_of(self, user_key: str) -> str | None:
        chat_id, _ = await self.chat_and_left(user_key)
        return chat_id

    async def chat_and_left(self, user_key: str) -> tuple[str | None, bool]:
        """The user's chat id (None: no row) and whether they left it: one read of their row, for each event."""
        row = await self._one("SELECT chat_id, left_at FROM users WHERE user_key = ?", user_key)
        return (None, False) if row is None else (str(row["chat_id"]), row["left_at"] is not None)

    async def mark_handled(self, user_key: str, message_id: str) -> None:
        """The newest message from the user that the bot handled (ids grow with time on the platforms that use it)."""
        await self.db.execute("UPDATE users SET last_message_id = ? WHERE user_key = ?", (message_id, user_key))
        await self.db.commit()

    async def last_handled(self, user_key: str) -> str | None:
        row = await self._one("SELECT last_message_id FROM users WHERE user_key = ?", user_key)
        return None if row is None or row[0] is None else str(row[0])

    async def collecting_chats(self, platform: str) -> list[tuple[str, str, str]]:
        """``(user_key, chat_id, last handled message id)`` of the platform's users whose session collects selfies
        and whose chat reaches them: where a message missed during a restart matters."""
        rows = await self._all(
            "SELECT u.user_key, u.chat_id, u.last_message_id FROM users u "
            "JOIN sessions s ON s.id = (SELECT MAX(id) FROM sessions WHERE user_key = u.user_key) "
            "WHERE u.platform = ? AND u.left_at IS NULL AND u.last_message_id IS NOT NULL AND s.state = ?",
            platform,
            SessionState.COLLECTING,
        )
        return [(str(row[0]), str(row[1]), str(row[2])) for row in rows]

    async def current_session(self, user_key: str) -> SessionRow | None:
        row = await self._one(
            "SELECT id, user_key, state, train_attempt, lora_key, subject FROM sessions WHERE user_key = ? "
            "ORDER BY id DESC LIMIT 1",
            user_key,
        )
        return None if row is None else SessionRow(*row)

    async def new_session(self, user_key: str, state: SessionState, subject: Subject | None = None) -> SessionRow:
        now = time.time()
        subject = subject or Subject()
        cursor = await self.db.execute(
            "INSERT INTO sessions (user_key, state, created_at, updated_at, subject) VALUES (?, ?, ?, ?, ?)",
            (user_key, state, now, now, subject.words()),
        )
        await self.db.commit()
        return SessionRow(int(cursor.lastrowid or 0), user_key, state, 0, None, subject)

    async def update_session(self, user_key: str, session_id: int, **fields: Any) -> None:
        """Set ``state``, ``train_attempt``, ``lora_key`` or ``subject`` (a ``Subject``) of one session."""
        if isinstance(fields.get("subject"), Subject):
            fields["subject"] = fields["subject"].words()
        allowed = {"state", "train_attempt", "lora_key", "subject"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"update_session fields must be among {sorted(allowed)}, got {sorted(fields)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        await self.db.execute(
            f"UPDATE sessions SET {assignments}, updated_at = ? WHERE id = ? AND user_key = ?",
            (*fields.values(), time.time(), session_id, user_key),
        )
        await self.db.commit()

    # Selfies.

    async def add_selfie(
        self,
        user_key: str,
        session_id: int,
        storage_key: str,
        width: int,
        height: int,
        facts: SelfieFacts | None = None,
    ) -> None:
        face_box = phash = embedding = None
        if facts is not None:
            face_box = ",".join(str(value) for value in facts.face_box)
            phash = f"{facts.phash:016x}"
            embedding = np.asarray(facts.embedding, dtype="<f4").tobytes()
        await self.db.execute(
            "INSERT INTO selfies (session_id, user_key, storage_key, width, height, created_at, face_box, phash, "
            "embedding) VALUES (?,?,?,?,?,?,?,?,?)",
            (session_id, user_key, storage_key, width, height, time.time(), face_box, phash, embedding),
        )
        await self.db.commit()

    async def selfies(self, user_key: str, session_id: int) -> list[SelfieRow]:
        rows = await self._all(
            "SELECT storage_key, width, height, face_box, phash, embedding FROM selfies "
            "WHERE user_key = ? AND session_id = ? ORDER BY id",
            user_key,
            session_id,
        )
        return [SelfieRow(str(row[0]), int(row[1]), int(row[2]), selfie_facts(row[3], row[4], row[5])) for row in rows]

    async def selfie_keys(self, user_key: str, session_id: int) -> list[str]:
        rows = await self._all(
            "SELECT storage_key FROM selfies WHERE user_key = ? AND session_id = ? ORDER BY id", user_key, session_id
        )
        return [str(row[0]) for row in rows]

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
        # Copy the WAL back into the (zeroed) database file and empty it: no old page of the user stays on disk.
        await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def forget_deliveries(self, event_ids: list[str]) -> None:
        """Drop the delivery records of stream entries that were deleted (``/delete`` erases a user's events)."""
        await self.db.executemany("DELETE FROM delivered_events WHERE event_id = ?", [(i,) for i in event_ids])
        await self.db.commit()

    # Retention.

    async def forget_selfies(self, user_key: str, session_id: int) -> None:
        await self.db.execute("DELETE FROM selfies WHERE user_key = ? AND session_id = ?", (user_key, session_id))
        await self.db.commit()

    async def forget_blobs(self, user_key: str, keys: list[str], *, model_gone_state: SessionState) -> tuple[int, int]:
        """Rows of blobs that storage no longer has: returns (sessions that lost their model, headshots gone).

        A session whose LoRA went moves to ``model_gone_state``; images go with their favorites (cascade).
        """
        models = images = 0
        for key in keys:
            cursor = await self.db.execute(
                "UPDATE sessions SET lora_key = NULL, state = ?, updated_at = ? WHERE user_key = ? AND lora_key = ?",
                (model_gone_state, time.time(), user_key, key),
            )
            models += cursor.rowcount
            cursor = await self.db.execute("DELETE FROM images WHERE user_key = ? AND storage_key = ?", (user_key, key))
            images += cursor.rowcount
            await self.db.execute("DELETE FROM selfies WHERE user_key = ? AND storage_key = ?", (user_key, key))
        await self.db.commit()
        return models, images
