"""The SQLite store: versioned schema, per-user isolation, complete deletion."""

from __future__ import annotations

from pathlib import Path

from bot.store import SCHEMA_VERSION, JobRow, Store


async def test_schema_is_versioned_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with Store(path) as store:
        assert await store.schema_version() == SCHEMA_VERSION
        await store.ensure_user("local:ann", "local", "ann")
        await store.new_session("local:ann", "collecting")
    async with Store(path) as store:  # a restart keeps the session and its state
        session = await store.current_session("local:ann")
        assert session is not None and session.state == "collecting"


async def test_one_user_cannot_reach_anothers_images(tmp_path: Path) -> None:
    async with Store(tmp_path / "db.sqlite3") as store:
        for user in ("local:ann", "local:bob"):
            await store.ensure_user(user, "local", user)
        session = await store.new_session("local:ann", "ready")
        await store.add_job(
            JobRow("generate:local:ann:1-1", "local:ann", session.id, "generate", "done", "studio", None)
        )
        image_id = await store.add_image("local:ann", "generate:local:ann:1-1", "users/ann/o.png", 7, "15")
        assert await store.image_by_message("local:bob", "15") is None
        assert await store.add_favorite("local:bob", image_id) is False
        assert await store.favorites("local:bob") == []
        assert await store.add_favorite("local:ann", image_id) is True
        await store.update_session("local:bob", session.id, state="new")  # bob cannot touch ann's session
        assert (await store.current_session("local:ann")).state == "ready"  # type: ignore[union-attr]


async def test_delete_user_removes_every_row(tmp_path: Path) -> None:
    async with Store(tmp_path / "db.sqlite3") as store:
        await store.ensure_user("local:ann", "local", "ann")
        session = await store.new_session("local:ann", "ready")
        await store.add_selfie("local:ann", session.id, "k1", 300, 300)
        await store.add_job(JobRow("j1", "local:ann", session.id, "generate", "done", "studio", None))
        image_id = await store.add_image("local:ann", "j1", "k2", 1, "3")
        await store.add_favorite("local:ann", image_id)
        await store.delete_user("local:ann")
        for table in ("users", "sessions", "selfies", "jobs", "images", "favorites"):
            async with store.db.execute(f"SELECT COUNT(*) FROM {table}") as cursor:
                row = await cursor.fetchone()
            assert row is not None and row[0] == 0, table
