"""The store's jobs: every training and render a user queued, and the daily quotas counted from them (kept past a
user's deletion as keyed hashes, so deleting cannot reset a day's limits)."""

from __future__ import annotations

import hashlib
import time

from bot.store.connection import Connection
from bot.store.schema import JobRow, JobStatus
from jobs.contract.kinds import JobKind

__all__ = ["JobRows"]

# A ``JobRow``'s columns, in its fields' order.
_JOB_ROW = "job_id, user_key, session_id, kind, status, style, progress_message_id, request"


class JobRows(Connection):
    """Jobs and usage; every query names the user's key (the watchdog's ``open_jobs()`` alone reads every user's)."""

    async def add_job(self, job: JobRow) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO jobs (job_id, user_key, session_id, kind, status, style, progress_message_id, "
            "created_at, request) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                job.job_id,
                job.user_key,
                job.session_id,
                job.kind,
                job.status,
                job.style,
                job.progress_message_id,
                time.time(),
                job.request_json(),
            ),
        )
        await self.db.commit()

    async def job(self, user_key: str, job_id: str) -> JobRow | None:
        row = await self._one(
            f"SELECT {_JOB_ROW} FROM jobs WHERE user_key = ? AND job_id = ?",
            user_key,
            job_id,
        )
        return None if row is None else JobRow(*row)

    async def active_job(self, user_key: str) -> JobRow | None:
        row = await self._one(
            f"SELECT {_JOB_ROW} FROM jobs "
            "WHERE user_key = ? AND status IN ('queued', 'running') ORDER BY created_at DESC LIMIT 1",
            user_key,
        )
        return None if row is None else JobRow(*row)

    async def open_jobs(self, user_key: str | None = None) -> list[JobRow]:
        """Every queued or running job, oldest first: of one user (a training and its preview can both be open),
        or of every user (the watchdog's round, the one query across users)."""
        where, args = ("AND user_key = ?", (user_key,)) if user_key is not None else ("", ())
        rows = await self._all(
            f"SELECT {_JOB_ROW} FROM jobs WHERE status IN ('queued', 'running') {where} ORDER BY created_at",
            *args,
        )
        return [JobRow(*row) for row in rows]

    async def count_jobs(self, user_key: str, session_id: int, kind: JobKind) -> int:
        row = await self._one(
            "SELECT COUNT(*) FROM jobs WHERE user_key = ? AND session_id = ? AND kind = ?", user_key, session_id, kind
        )
        return int(row[0]) if row else 0

    async def session_jobs(self, user_key: str, session_id: int, kind: JobKind) -> list[JobRow]:
        """The session's jobs of ``kind``, whatever their status, oldest first."""
        rows = await self._all(
            f"SELECT {_JOB_ROW} FROM jobs WHERE user_key = ? AND session_id = ? AND kind = ? ORDER BY created_at",
            user_key,
            session_id,
            kind,
        )
        return [JobRow(*row) for row in rows]

    async def update_job(
        self, user_key: str, job_id: str, *, status: JobStatus | None = None, progress_message_id: str | None = None
    ) -> None:
        if status is not None:
            finished = time.time() if JobStatus(status).finished else None
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

    # Quotas.

    async def usage_since(self, user_key: str, since: float) -> tuple[int, int]:
        """``(trainings, headshots)`` of the user since the time ``since``: trainings that failed on our side are not
        the user's to pay for; cancelled ones used the GPU and count."""
        trainings = await self._one(
            "SELECT COUNT(*) FROM jobs WHERE user_key = ? AND kind = ? AND status != ? AND created_at >= ?",
            user_key,
            JobKind.TRAIN,
            JobStatus.FAILED,
            since,
        )
        images = await self._one("SELECT COUNT(*) FROM images WHERE user_key = ? AND created_at >= ?", user_key, since)
        carried = await self._one(
            "SELECT COALESCE(SUM(trainings), 0), COALESCE(SUM(images), 0) FROM usage_carried "
            "WHERE user_hash = ? AND day_start >= ?",
            await self._user_hash(user_key),
            since,
        )
        carried_trainings, carried_images = (int(carried[0]), int(carried[1])) if carried else (0, 0)
        return (
            (int(trainings[0]) if trainings else 0) + carried_trainings,
            (int(images[0]) if images else 0) + carried_images,
        )

    async def carry_usage(self, user_key: str, day_start: float) -> None:
        """Keep the counts of what the user used since ``day_start`` (today's UTC midnight) past ``delete_user``;
        drop every user's counts of earlier days."""
        trainings, images = await self.usage_since(user_key, day_start)
        user_hash = await self._user_hash(user_key)
        await self.db.execute("DELETE FROM usage_carried WHERE day_start < ?", (day_start,))
        await self.db.execute("DELETE FROM usage_carried WHERE user_hash = ?", (user_hash,))
        if trainings or images:
            await self.db.execute(
                "INSERT INTO usage_carried (user_hash, day_start, trainings, images) VALUES (?, ?, ?, ?)",
                (user_hash, day_start, trainings, images),
            )
        await self.db.commit()

    async def _user_hash(self, user_key: str) -> str:
        """``user_key`` keyed-hashed with this database's salt: platform ids are few enough to guess through a plain
        hash, not through one keyed with 16 random bytes."""
        row = await self._one("SELECT salt FROM store_salt")
        assert row is not None  # written by the migration that made the table
        return hashlib.blake2b(user_key.encode(), key=bytes(row[0]), digest_size=16).hexdigest()
