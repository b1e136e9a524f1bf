"""The SQLite store: versioned schema, per-user isolation, complete deletion."""

from __future__ import annotations

from pathlib import Path

from bot.store.database import Store
from bot.store.schema import SCHEMA_VERSION, JobRow


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


async def test_selfie_face_facts_round_trip_and_older_rows_migrate(tmp_path: Path) -> None:
    import sqlite3

    import numpy as np

    from bot.store.schema import MIGRATIONS
    from pipeline.selfies.intake import SelfieFacts

    # A database from before the face checks (schema 1), holding one selfie.
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(f"{MIGRATIONS[0]} PRAGMA user_version = 1;")
        old.execute("INSERT INTO users VALUES ('local:ann', 'local', 'ann', 0)")
        old.execute("INSERT INTO sessions (user_key, state, created_at, updated_at) VALUES ('local:ann', 'c', 0, 0)")
        old.execute(
            "INSERT INTO selfies (session_id, user_key, storage_key, width, height, created_at) "
            "VALUES (1, 'local:ann', 'users/ann/1.jpg', 300, 300, 0)"
        )
    facts = SelfieFacts((10, 20, 90, 91), 0xF0F0_0000_FFFF_1234, np.linspace(-0.2, 0.2, 128, dtype=np.float32))
    async with Store(path) as store:
        assert await store.schema_version() == SCHEMA_VERSION
        await store.add_selfie("local:ann", 1, "users/ann/2.jpg", 400, 300, facts)
        old_row, new_row = await store.selfies("local:ann", 1)
        assert old_row.facts is None  # checked before face data existed: kept, trained with a centre crop
        assert new_row.facts is not None and new_row.facts.face_box == (10, 20, 90, 91)
        assert new_row.facts.phash == facts.phash and np.array_equal(new_row.facts.embedding, facts.embedding)
        assert await store.selfies("local:bob", 1) == []
