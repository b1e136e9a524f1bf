"""The store's headshots: the images posted to a user and the ones they keep as favorites."""

from __future__ import annotations

import time

from bot.store.connection import Connection
from bot.store.schema import ImageRow

__all__ = ["GalleryRows"]


class GalleryRows(Connection):
    """Images and favorites; every query names the user's key."""

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
