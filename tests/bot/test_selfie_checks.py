"""Selfie checks in the chat: a verdict per photo, and what the checks learnt reaches training and ranking."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageFilter
from redis.asyncio import Redis

from bot.core.session import SessionState
from jobs.contract.events import ImagesReady, event_from_fields
from jobs.contract.keys import identity_key, lora_key
from tests.harness import Harness


async def test_checks_answer_each_photo_and_feed_training_and_ranking(
    harness: Harness, selfie_dir: Path, tmp_path: Path, redis: Redis
) -> None:
    harness.start_delivery()
    photos = sorted(selfie_dir.iterdir())
    shaky = tmp_path / "shaky.jpg"
    Image.open(photos[0]).filter(ImageFilter.GaussianBlur(3)).save(shaky, quality=90)

    # 1. Good photos are accepted; a blurred one and one sent twice are refused, each saying what to do.
    answer = await harness.say("/train " + " ".join(str(path) for path in [*photos, shaky, photos[1]]))
    assert answer.count(": accepted") == len(photos)
    assert "✗ shaky.jpg: Blurry" in answer and "hold the phone still" in answer
    assert f"✗ {photos[1].name}: Same photo as one you already sent" in answer
    assert await harness.selfie_count() == len(photos)

    # 2. Training crops around each stored face, and the reference face is stored beside the LoRA.
    await harness.say("/train start")
    queued = await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name)
    centers = queued[0].args[0]["crop_centers"]
    assert len(centers) == len(photos) and all(0.2 < x < 0.8 and 0.15 < y < 0.7 for x, y in centers)
    session = await harness.app.store.current_session(harness.chat.chat.user_key)
    assert session is not None
    reference_key = identity_key(lora_key(harness.chat.chat.user_key, session.id))
    assert len(json.loads(await harness.app.core.storage.get(reference_key))["embedding"]) == 128

    # 3. Rendering scores every candidate; the tiny model draws no faces, so all score 0 and the user still gets
    # the number asked for.
    await harness.run_worker()
    await harness.wait_state(SessionState.READY)
    await harness.say("/headshot linkedin")
    await harness.run_worker()
    await harness.wait_state(SessionState.READY)
    assert len(harness.port.headshots) == harness.settings.headshots_per_request
    entries = await redis.xrange(harness.settings.events_stream)
    events = [
        event_from_fields(entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
        for entry_id, fields in entries
    ]
    ready = [event for event in events if isinstance(event, ImagesReady)]
    assert [image.score for image in ready[0].images] == [0.0, 0.0]
