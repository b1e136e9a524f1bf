"""A worker on FLUX.2 [klein] runs the same train and render jobs as on SDXL, end to end through the chat."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from redis.asyncio import Redis

from bot.core.session import SessionState
from jobs.settings import Settings
from jobs.worker.model_setup import prepare_model
from pipeline.diffusion.families import Family, pipeline_family
from tests.harness import Harness


async def test_a_klein_worker_trains_and_renders_through_the_job_code(
    settings: Settings, selfie_dir: Path, tmp_path: Path, redis: Redis
) -> None:
    klein = settings.model_copy(update={"model": "tiny-flux2", "device": "cpu"})
    model = prepare_model(klein)
    assert pipeline_family(model.pipe) is Family.FLUX2
    assert model.lora_slot is not None and model.training_slot is None  # renders through the slot, trains eagerly

    async with Harness(klein, model, tmp_path / "out") as harness:
        await harness.train_to_ready(selfie_dir)
        await harness.say("/headshot studio")
        await harness.run_worker()
        await harness.wait_state(SessionState.READY)
    assert len(harness.port.headshots) == 2
    for path in harness.port.headshots:
        with Image.open(path) as image:
            assert (image.format, image.size) == ("PNG", (56, 72))  # the tiny klein's 4:5 at 64x64 px
    assert model.lora_slot.active is None  # the user's LoRA left the warm pipeline with the request


def test_compiling_a_klein_worker_by_name_fails_at_start(model_cache: Path, tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        model="tiny-flux2",
        device="cpu",
        data_dir=tmp_path,
        model_cache_dir=model_cache,
        compile_unet=True,
    )
    with pytest.raises(ValueError, match="HEADSHOT_COMPILE_UNET=true.*FLUX.2"):
        prepare_model(settings)
