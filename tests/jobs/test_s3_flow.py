"""The whole product on S3 storage: bot and a real worker share only Redis and a bucket on moto's S3 server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from redis.asyncio import Redis

from bot.core.session import SessionState
from jobs.settings import Settings
from tests.harness import Harness


async def test_train_and_render_with_every_blob_in_the_bucket(
    s3_settings: Settings, s3_client: Any, tiny_model: Any, selfie_dir: Path, tmp_path: Path, redis: Redis
) -> None:
    def objects() -> list[str]:
        listing = s3_client.list_objects_v2(Bucket=s3_settings.s3_bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    async with Harness(s3_settings, tiny_model, tmp_path / "out") as harness:
        harness.start_delivery()
        # 1. Selfies go to the bucket; the worker trains from there and stores the LoRA beside them.
        await harness.say(f"/train {selfie_dir}")
        assert sum(key.endswith(".jpg") for key in objects()) == 4
        assert "queued" in await harness.say("/train start")
        await harness.run_worker()
        await harness.wait_state(SessionState.READY)
        # 2. The worker streams the LoRA back down, renders, and the bot posts the PNGs it reads from the bucket.
        await harness.say("/headshot linkedin")
        await harness.run_worker()
        await harness.wait_state(SessionState.READY)
        assert len(harness.port.headshots) == 2
        for path in harness.port.headshots:
            with Image.open(path) as image:
                assert image.format == "PNG"
        stored = objects()
        user = "prod/users/local%3Aalice/"
        assert all(key.startswith(user) for key in stored)
        # Trained, so the selfies are erased (retention); the LoRA and its likeness reference stay.
        assert sum(key.endswith(".jpg") for key in stored) == 0
        assert sum(key.endswith(".safetensors") for key in stored) == 1
        assert sum(key.endswith("identity.json") for key in stored) == 1
        assert sum(key.endswith(".png") for key in stored) == 2
        assert not any(path.is_file() for path in s3_settings.resolved_storage_dir.rglob("*"))  # nothing local
        # 3. /delete empties the user's part of the bucket.
        await harness.say("/delete")
        assert "erased" in await harness.say("/delete confirm")
        assert objects() == []
