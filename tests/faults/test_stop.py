"""Jobs that stop early: a job type's timeout is reported in plain words; /cancel leaves no outputs behind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.core.session import SessionState
from jobs.contract.keys import output_prefix
from jobs.settings import Settings
from tests.harness import Harness


def _files_under(settings: Settings, prefix: str) -> list[Path]:
    folder = settings.resolved_storage_dir / prefix
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


async def test_training_past_its_timeout_is_stopped_and_reported(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    settings = settings.model_copy(update={"train_steps": 2000, "train_timeout_s": 2})
    async with Harness(settings, tiny_model, tmp_path / "out") as harness:
        harness.start_delivery()
        await harness.say(f"/train {selfie_dir}")
        await harness.say("/train start")
        await harness.run_worker()
        await harness.wait_state(SessionState.COLLECTING)
        chat = "\n".join(harness.lines)
        assert "Your training took longer than the 2 s it may take, so I stopped it" in chat
        assert "selfies are kept" in chat and "cancelled" not in chat
        # No LoRA weights were stored (the likeness reference the bot wrote at /train start stays for a retry).
        lora_folder = _files_under(settings, "users/local%3Aalice/sessions/1/lora")
        assert [path.name for path in lora_folder] in ([], ["identity.json"])


async def test_cancel_during_rendering_stops_it_and_leaves_no_outputs(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    settings = settings.model_copy(update={"inference_steps": 400})
    async with Harness(settings, tiny_model, tmp_path / "out") as harness:
        await harness.train_to_ready(selfie_dir)
        await harness.say("/headshot studio")
        worker = asyncio.create_task(harness.run_worker())
        while not any("Rendering your headshots: starting" in line for line in harness.lines):
            await asyncio.sleep(0.05)
        assert "Rendering cancelled" in await harness.say("/cancel")
        await asyncio.wait_for(worker, 60)  # stopped within a step, not after 400
        await harness.wait_state(SessionState.READY)
        assert harness.port.headshots == []
        assert not _files_under(settings, output_prefix("local:alice", "1-1"))


async def test_cancel_after_the_render_finished_erases_the_images_it_made(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    out = tmp_path / "out"
    prefix = output_prefix("local:alice", "1-1")
    async with Harness(settings, tiny_model, out) as harness:
        await harness.train_to_ready(selfie_dir)
    async with Harness(settings, tiny_model, out) as harness:  # a bot that is not delivering just now
        await harness.say("/headshot studio")
        await harness.run_worker()  # the render finishes and stores its images ...
        assert len(_files_under(settings, prefix)) == 2
        assert "Rendering cancelled" in await harness.say("/cancel")  # ... and the user cancels before seeing them
    async with Harness(settings, tiny_model, out) as harness:
        harness.start_delivery()
        for _ in range(200):
            if not _files_under(settings, prefix):
                break
            await asyncio.sleep(0.05)
        assert not _files_under(settings, prefix)
        assert harness.port.headshots == []
