"""/delete leaves no trace: after a full flow of two users, user A's key and image hashes are nowhere in SQLite,
storage or Redis (names and values), while user B keeps everything."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.core.session import SessionState
from bot.local.chat import LocalChat
from bot.local.samples import make_sample_selfies
from jobs.settings import Settings
from tests.bot.flows import full_flow, say_as
from tests.harness import Harness


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _needles(user: str, hashes: set[str]) -> list[bytes]:
    # The user key as rows hold it, as storage quotes it, and the bare id (chat ids, job ids), plus every hash.
    return [f"local:{user}".encode(), f"local%3A{user}".encode(), user.encode(), *(h.encode() for h in hashes)]


def _sqlite_hits(database: Path, needles: list[bytes]) -> list[str]:
    hits = []
    with sqlite3.connect(database) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    text = value if isinstance(value, bytes) else str(value).encode()
                    hits += [f"{table}: {value!r}" for needle in needles if needle in text]
    # The files themselves too: deleted rows must not linger in free pages or the write-ahead log.
    for path in database.parent.glob(database.name + "*"):
        raw = path.read_bytes()
        hits += [f"{path.name} bytes hold {needle!r}" for needle in needles if needle in raw]
    return hits


def _storage_hits(root: Path, needles: list[bytes], hashes: set[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        hits += [f"path {path}" for needle in needles if needle in str(path).encode()]
        if path.is_file() and _sha(path.read_bytes()) in hashes:
            hits.append(f"file {path} has the bytes of one of the user's images")
    return hits


async def _redis_hits(redis: Redis, needles: list[bytes]) -> list[str]:
    hits = []
    async for name in redis.scan_iter(count=1000):
        kind = (await redis.type(name)).decode()
        values: list[bytes] = [name]
        if kind == "string":
            values.append(await redis.get(name))
        elif kind == "hash":
            values += [part for pair in (await redis.hgetall(name)).items() for part in pair]
        elif kind == "zset":
            values += await redis.zrange(name, 0, -1)
        elif kind == "list":
            values += await redis.lrange(name, 0, -1)
        elif kind == "set":
            values += list(await redis.smembers(name))
        elif kind == "stream":
            for entry_id, fields in await redis.xrange(name):
                values += [entry_id, *(part for pair in fields.items() for part in pair)]
        values = [value for value in values if value is not None]  # a key may expire between SCAN and GET
        hits += [f"{kind} {name!r}: {value[:80]!r}" for value in values for needle in needles if needle in value]
    return hits


@pytest.fixture
async def harness(settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis) -> AsyncIterator[Harness]:
    # Selfies kept after training here, so /delete itself must find and erase them.
    kept = settings.model_copy(update={"delete_selfies_after_training": False})
    async with Harness(kept, tiny_model, tmp_path / "out") as running:
        yield running


async def test_delete_erases_every_trace_of_one_user_and_keeps_the_other(
    harness: Harness, selfie_dir: Path, tmp_path: Path, redis: Redis
) -> None:
    harness.start_delivery()
    bob_selfies = tmp_path / "bob-selfies"
    make_sample_selfies(bob_selfies, count=4, seed=5)
    await full_flow(harness, {"alice": selfie_dir, "bob": bob_selfies})

    # 1. Everything of Alice's, as hashes: the photos she sent, and every file stored for her.
    storage = harness.settings.resolved_storage_dir
    alice_files = [path for path in (storage / "users" / "local%3Aalice").rglob("*") if path.is_file()]
    assert {p.parent.name for p in alice_files} >= {"selfies", "lora"}
    assert any("outputs" in p.parts for p in alice_files)
    hashes = {_sha(path.read_bytes()) for path in alice_files} | {_sha(p.read_bytes()) for p in selfie_dir.iterdir()}
    bob_files = {path: path.read_bytes() for path in (storage / "users" / "local%3Abob").rglob("*") if path.is_file()}
    needles = _needles("alice", hashes)
    database = harness.settings.resolved_database_path
    assert _sqlite_hits(database, needles) and await _redis_hits(redis, needles)  # the scans do see her before

    # 2. Alice erases herself.
    alice = LocalChat(harness.app.service, harness.port, "alice")
    assert "Are you sure" in await say_as(harness, alice, "/delete")
    assert "erased" in await say_as(harness, alice, "/delete confirm")

    # 3. Nothing of hers anywhere.
    assert _sqlite_hits(database, needles) == []
    assert _storage_hits(storage, needles, hashes) == []
    assert await _redis_hits(redis, needles) == []

    # 4. Bob keeps all of his: files byte for byte, his session, headshots and favorite, and can go on.
    assert {path: path.read_bytes() for path in bob_files} == bob_files
    bob = LocalChat(harness.app.service, harness.port, "bob")
    assert "Session: ready" in await say_as(harness, bob, "/status")
    assert "favorite headshots (1)" in await say_as(harness, bob, "/favorites")
    assert len(await harness.app.store.images("local:bob")) == 2
    assert "Rendering" in await say_as(harness, bob, "/headshot corporate")
    assert await harness.session_state("local:bob") == SessionState.GENERATING


async def test_delete_while_training_is_queued_drops_the_job(harness: Harness, selfie_dir: Path, redis: Redis) -> None:
    harness.start_delivery()
    await harness.say(f"/train {selfie_dir}")
    assert "Training queued" in await harness.say("/train start")
    await harness.say("/delete")
    assert "erased" in await harness.say("/delete confirm")

    # The queued job is gone before any worker saw it: a worker now finds nothing to do, and nothing names her.
    assert await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name) == []
    await harness.run_worker()
    assert not any(harness.settings.resolved_storage_dir.rglob("*.*"))
    assert await _redis_hits(redis, _needles("alice", set())) == []
    assert await harness.session_state() is None


async def test_delete_while_training_runs_aborts_it_and_erases_what_it_leaves(
    settings: Settings,
    tiny_model: Any,
    tmp_path: Path,
    selfie_dir: Path,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A training that outlives the /delete by a minute unless it is aborted. At 20 steps it ended on its own before
    # anyone looked, and the lost abort (a running job counted as queued: its abort request erased) went unseen.
    settings = settings.model_copy(update={"train_steps": 400})
    async with Harness(settings, tiny_model, tmp_path / "out") as harness:
        caplog.set_level(logging.INFO, logger="arq.worker")
        harness.start_delivery()
        await harness.say(f"/train {selfie_dir}")
        await harness.say("/train start")
        worker = asyncio.create_task(harness.run_worker())
        job = await harness.app.store.active_job("local:alice")
        assert job is not None
        deadline = time.monotonic() + 60
        while (await harness.app.store.job("local:alice", job.job_id)).status != "running":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "training never started"
            await asyncio.sleep(0.05)

        await harness.say("/delete")
        assert "erased" in await harness.say("/delete confirm")
        await asyncio.wait_for(worker, 60)
        assert any("aborted" in record.getMessage() for record in caplog.records)  # stopped mid-training

        # The job's last event, its arq result and anything it stored are erased once delivery has seen them.
        needles = _needles("alice", set())
        deadline = time.monotonic() + 30
        while hits := await _redis_hits(redis, needles):
            assert time.monotonic() < deadline, hits
            await asyncio.sleep(0.1)
        assert not any(path.is_file() for path in harness.settings.resolved_storage_dir.rglob("*"))
        assert _sqlite_hits(harness.settings.resolved_database_path, needles) == []
