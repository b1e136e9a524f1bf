"""The worker's image safety check: flagged renders are never stored, ``dropped`` counts them, and the user hears it
once, in the request's last message; a worker that cannot load the detector stops at start, naming the switch.

The tiny model renders noise, which no detector flags, so the worker here gets a stand-in detector through the
same constructor the real one comes by; NudeNet's own detector is run on real photos in
tests/pipeline/test_safety_image.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.core import texts
from bot.core.session import SessionState
from jobs.contract.events import ImagesReady, event_from_fields
from jobs.contract.keys import lora_key
from jobs.contract.stream import EventPublisher
from jobs.settings import Settings
from jobs.worker.monitor import WorkerMonitor
from jobs.worker.state import start_worker_state
from pipeline.errors import ModelLoadError
from pipeline.safety.image import ImageSafety
from tests.harness import Harness


class ExposedIn:
    """Stands in for NudeNet's ``NudeDetector``: the renders it is shown, by their order in a request, carry exposed
    breasts at a score of 0.9 (``every``: all of them)."""

    def __init__(self, *, first: int = 0, every: bool = False) -> None:
        self.first, self.every, self.shown = first, every, 0

    def detect(self, image: Any) -> list[dict[str, Any]]:
        self.shown += 1
        flagged = self.every or self.shown <= self.first
        return [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.9, "box": [0, 0, 8, 8]}] if flagged else []


async def _images_ready(redis: Redis, settings: Settings) -> list[ImagesReady]:
    entries = await redis.xrange(settings.events_stream)
    events = [
        event_from_fields(entry_id.decode(), {key.decode(): value.decode() for key, value in fields.items()})
        for entry_id, fields in entries
    ]
    return [event for event in events if isinstance(event, ImagesReady)]


async def test_a_flagged_render_is_not_stored_its_place_taken_counted_and_told_once(
    harness: Harness, selfie_dir: Path, redis: Redis
) -> None:
    # 1. Alice's model; then /headshot (3 candidates for 2 headshots), whose first candidate the check flags.
    await harness.train_to_ready(selfie_dir)
    await harness.say("/headshot studio")
    detector = ExposedIn(first=1)
    await harness.run_worker(ImageSafety(detector))
    await harness.wait_state(SessionState.READY)

    # 2. Every candidate was checked, the next-best took the flagged one's place: both asked for were posted and
    #    recorded; the flagged one never reached storage.
    user = harness.chat.chat.user_key
    assert detector.shown == 3
    assert len(harness.port.headshots) == 2 and len(await harness.app.store.images(user)) == 2
    stored = sorted(harness.settings.resolved_storage_dir.rglob("*.png"))
    assert sorted(path.name for path in stored) == sorted(p.name.split("-", 1)[1] for p in harness.port.headshots)
    [ready] = await _images_ready(redis, harness.settings)
    assert ready.dropped == 1 and len(ready.images) == 2

    # 3. The user is told once, in the request's last word.
    told = [m for m in harness.port.messages.values() if texts.WITHHELD_SOME.format(count=1) in m.text]
    assert len(told) == 1 and told[0].text.startswith("Here are your Studio portrait headshots.")


async def test_a_request_whose_renders_were_all_withheld_says_so_once_and_frees_the_session(
    settings: Settings, tmp_path: Path, redis: Redis
) -> None:
    async with Harness(settings, None, tmp_path / "out") as harness:
        # 1. A trained user's request, queued as /headshot queues it (no worker: its event is published below).
        store, user = harness.app.store, harness.chat.chat.user_key
        await store.ensure_user(user, "local", user)
        session = await store.new_session(user, SessionState.READY)
        await store.update_session(user, session.id, lora_key=lora_key(user, session.id))
        await harness.say("/headshot actor")
        job = await store.active_job(user)
        assert job is not None

        # 2. The worker's event: every render withheld; published twice (a retried job sends it again): told once.
        publisher = EventPublisher(redis, settings.events_stream)
        event = ImagesReady(
            user_key=user, job_id=job.job_id, style="actor", title="Actor headshot", images=(), dropped=3
        )
        await publisher.publish(event)
        harness.start_delivery()
        await harness.wait_state(SessionState.READY)
        await publisher.publish(event)
        await asyncio.sleep(0.5)

        all_withheld = texts.WITHHELD_ALL.format(count=3, style="Actor headshot")
        assert [m.text for m in harness.port.messages.values() if "image safety" in m.text] == [all_withheld]
        assert harness.port.headshots == [] and await store.images(user) == []


def test_an_images_ready_event_from_before_the_check_reads_as_nothing_dropped() -> None:
    data = {"style": "studio", "title": "Studio portrait", "images": [{"key": "k", "seed": 1, "score": None}]}
    fields = {"type": "images_ready", "user_key": "local:a", "job_id": "j", "data": json.dumps(data)}
    event = event_from_fields("1-0", fields)
    assert isinstance(event, ImagesReady) and event.dropped == 0


async def test_a_worker_that_cannot_load_the_check_stops_at_start_naming_the_switch(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch, tiny_model: Any
) -> None:
    monkeypatch.setitem(sys.modules, "nudenet", None)  # what an import finds when the package is not installed
    monitor = WorkerMonitor(settings, "test-worker")
    with pytest.raises(ModelLoadError, match="HEADSHOT_IMAGE_SAFETY=off"):
        await start_worker_state(redis, settings, monitor, model=tiny_model)
    # Switched off, the same worker starts, without a check.
    off = settings.model_copy(update={"image_safety": False})
    state = await start_worker_state(redis, off, WorkerMonitor(off, "test-worker"), faces=object(), model=tiny_model)  # type: ignore[arg-type]
    assert state.image_safety is None
    await state.close()
