"""Retention as a user lives it: selfies gone once the model is trained; a month later the model and headshots
expire (the cron job on real, aged files) and the bot forgets them and says so, while a fresh user keeps theirs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from redis.asyncio import Redis

from bot.core.session import SessionState
from bot.local.chat import LocalChat
from bot.local.samples import make_sample_selfies
from jobs.contract.stream import EventPublisher
from jobs.storage import LocalStorage
from jobs.worker.retention import expire_old_blobs
from tests.bot.flows import full_flow, say_as
from tests.harness import Harness, reached_state, wait_on


def _age(folder: Path, days: float) -> None:
    when = time.time() - days * 86_400
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (when, when))


async def test_selfies_go_after_training_and_old_models_expire(
    harness: Harness, selfie_dir: Path, tmp_path: Path, redis: Redis
) -> None:
    harness.start_delivery()
    bob_selfies = tmp_path / "bob-selfies"
    make_sample_selfies(bob_selfies, count=4, seed=5)
    await full_flow(harness, {"alice": selfie_dir, "bob": bob_selfies})
    storage_root = harness.settings.resolved_storage_dir
    alice_dir = storage_root / "users" / "local%3Aalice"

    # 1. Training succeeded, so the selfies are gone (files and rows); the model and headshots remain.
    assert harness.settings.delete_selfies_after_training
    assert not list(alice_dir.rglob("selfies/*")) and not list(storage_root.rglob("*.jpg"))
    session = await harness.app.store.current_session("local:alice")
    assert session is not None and await harness.app.store.selfie_keys("local:alice", session.id) == []
    assert list(alice_dir.rglob("*.safetensors")) and len(list(alice_dir.rglob("*.png"))) == 2

    # 2. A month on for Alice only: the worker's cron job deletes her blobs and tells the bot.
    _age(alice_dir, harness.settings.retention_days + 1)
    events = EventPublisher(redis, harness.settings.events_stream)
    # Her LoRA, its identity reference (identity.json) and her two headshots.
    storage = LocalStorage(storage_root)
    assert await expire_old_blobs(harness.settings, storage, events) == {"expired": 4, "users": 1}
    assert not any(path.is_file() for path in alice_dir.rglob("*"))

    # 3. The bot forgets her model, headshots and favorite, and tells her; /headshot now asks her to train.
    notice = "erased your trained model and headshots older than 30 days"
    await wait_on(harness.port.changed, lambda: any(notice in line for line in harness.lines), 30, notice)
    assert await reached_state(harness.app.core, "local:alice", SessionState.NEW, 1)
    alice = LocalChat(harness.app.service, harness.port, "alice")
    assert await harness.app.store.images("local:alice") == []
    assert "No favorites yet" in await say_as(harness, alice, "/favorites")
    assert "train your model first" in await say_as(harness, alice, "/headshot linkedin")

    # 4. Bob's files were fresh: all still there, and his session still renders.
    bob = LocalChat(harness.app.service, harness.port, "bob")
    assert len(await harness.app.store.images("local:bob")) == 2
    assert "favorite headshots (1)" in await say_as(harness, bob, "/favorites")
    assert "Rendering" in await say_as(harness, bob, "/headshot corporate")
