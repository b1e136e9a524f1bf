"""User A can never fetch, favorite, cancel, delete or render with user B's data, whatever ids A sends."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.local.chat import LocalChat
from bot.local.samples import make_sample_selfies
from jobs.contract.events import Expired, ImagesReady, RenderedImage, Trained
from jobs.contract.keys import user_prefix
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import job_owner, train_job_id
from jobs.contract.stream import EventPublisher
from jobs.storage import LocalStorage
from tests.bot.flows import full_flow, say_as
from tests.harness import Harness


async def test_alice_cannot_reach_bobs_data_by_any_id(
    harness: Harness, selfie_dir: Path, tmp_path: Path, redis: Redis
) -> None:
    harness.start_delivery()
    bob_selfies = tmp_path / "bob-selfies"
    make_sample_selfies(bob_selfies, count=4, seed=5)
    messages = await full_flow(harness, {"alice": selfie_dir, "bob": bob_selfies})
    store, storage = harness.app.store, harness.app.core.storage
    alice = LocalChat(harness.app.service, harness.port, "alice")
    bob_images = await store.images("local:bob")
    bob_session = await store.current_session("local:bob")
    assert bob_session is not None
    bob_before = (await store.favorites("local:bob"), bob_images, bob_session)

    # 1. Reactions on Bob's headshots (real message ids in the same chat window) mark nothing and say nothing.
    for message_id in messages["bob"]:
        assert await say_as(harness, alice, f"react {message_id}") == ""
    # 2. Favorite numbers count her own headshots only: #3 and #4 exist, but they are Bob's.
    for number in (3, 4, bob_images[0].id, bob_images[-1].id):
        assert "you have 2" in await say_as(harness, alice, f"/favorite {number}")
    # 3. /favorites sends her own file only.
    assert "favorite headshots (1)" in await say_as(harness, alice, "/favorites")
    alice_first = (await store.images("local:alice"))[0]
    assert harness.port.files[-1].read_bytes() == await storage.get(alice_first.storage_key)

    # 4. Bob's job running or queued: her /cancel cancels nothing of his.
    bob = LocalChat(harness.app.service, harness.port, "bob")
    assert "Rendering" in await say_as(harness, bob, "/headshot corporate")
    assert "nothing to cancel" in await say_as(harness, alice, "/cancel")
    queued = await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name)
    assert [(job.function, job.args[0]["user_key"]) for job in queued] == [(JobKind.GENERATE.function, "local:bob")]

    # 5. Her render uses her model, whatever his storage keys she names in the words of her style.
    bob_lora = bob_session.lora_key
    assert bob_lora is not None
    assert "Rendering" in await say_as(harness, alice, f"/headshot portrait with {bob_lora} and ../../local%3Abob")
    queued = await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name)
    mine = [job.args[0] for job in queued if job.args[0]["user_key"] == "local:alice"]
    assert len(mine) == 1 and mine[0]["lora_key"].startswith(user_prefix("local:alice"))
    assert mine[0]["output_prefix"].startswith(user_prefix("local:alice"))

    # 6. The store answers only for the key asked with: Bob's ids under Alice's key reach nothing.
    assert not await store.add_favorite("local:alice", bob_images[1].id)
    assert not await store.remove_favorite("local:alice", bob_images[0].id)
    assert await store.image_by_message("local:alice", str(bob_images[0].message_id)) is None
    bob_job = bob_images[0].job_id
    assert await store.job("local:alice", bob_job) is None
    await store.update_job("local:alice", bob_job, status="cancelled")
    await store.update_session("local:alice", bob_session.id, state="new", lora_key=None)
    assert await store.selfie_keys("local:alice", bob_session.id) == []
    assert (await store.job("local:bob", bob_job)).status == "done"  # type: ignore[union-attr]

    # 7. Events come from workers; even wrong ones naming Alice (or nobody) with his ids, keys and job leave him whole.
    keys = [row.storage_key for row in bob_images] + [bob_lora]
    publisher = EventPublisher(redis, harness.settings.events_stream)
    forged = [
        ImagesReady(
            user_key="local:alice",
            job_id=bob_job,
            style="linkedin",
            title="LinkedIn",
            images=tuple(RenderedImage(key, 1) for key in keys),
        ),
        Trained(user_key="local:ghost", job_id=train_job_id("local:bob", bob_session.id, 0), lora_key=bob_lora),
        Expired(user_key="local:alice", job_id="retention", keys=tuple(keys), days=30),
    ]
    for event in forged:
        await publisher.publish(event)
    assert await _all_delivered(redis, harness.settings.events_stream)
    for key in keys:
        assert await storage.exists(key), f"{key} was deleted through another user's event"
    assert await store.images("local:bob") == bob_images
    bob_now = await store.current_session("local:bob")
    assert bob_now is not None and (bob_now.id, bob_now.lora_key) == (bob_session.id, bob_lora)

    # 8. Her erasure leaves him whole.
    await say_as(harness, alice, "/delete")
    assert "erased" in await say_as(harness, alice, "/delete confirm")
    bob_session_after = await store.current_session("local:bob")
    assert bob_session_after is not None and bob_session_after.lora_key == bob_lora
    assert (await store.favorites("local:bob"), await store.images("local:bob")) == bob_before[:2]
    for row in bob_images:
        assert await storage.exists(row.storage_key)


async def _all_delivered(redis: Redis, stream: str, timeout_s: float = 30) -> bool:
    """Whether the bot's group has read every entry of the stream and acked them all."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        last = (await redis.xinfo_stream(stream))["last-generated-id"]
        groups = await redis.xinfo_groups(stream)
        if groups and all(group["pending"] == 0 and group["last-delivered-id"] == last for group in groups):
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("job_id", "owner"),
    [
        ("train:local:alice:3:0", "local:alice"),
        ("train:local:al:ice:3:0", "local:al:ice"),  # a user id holding ':' is not the shorter user "al"
        ("generate:telegram:42:7-2", "telegram:42"),
        ("generate:local:al:ice:7-2", "local:al:ice"),
        ("cron:expire_blobs:123", None),
        ("train:local:alice", None),
    ],
)
def test_job_ids_name_exactly_one_owner(job_id: str, owner: str | None) -> None:
    assert job_owner(job_id) == owner


@pytest.mark.parametrize("user_id", ["../bob", "bob/../../etc", "%3Abob", "bob%2F..", "..", "a\x00b", "ünï 🙂"])
def test_no_user_id_names_a_folder_outside_its_own(user_id: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    prefix = user_prefix(f"local:{user_id}")
    path = storage.local_path(prefix + "sessions/1/selfies/001.jpg")
    assert path.parent.parent.parent.parent.parent == tmp_path / "users"
    assert prefix != user_prefix("local:bob") and prefix.count("/") == 2
