"""A worker on FLUX.2 [klein] runs the same train and render jobs as on SDXL, end to end through the chat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from redis.asyncio import Redis

from bot.core import texts
from bot.core.session import SessionState
from jobs.ops.health import WorkerFeature
from jobs.settings import Settings
from jobs.worker.model_setup import ServingModel, model_features, prepare_model
from pipeline.diffusion.families import Family, pipeline_family
from pipeline.diffusion.generation import generate_headshots
from pipeline.diffusion.references import reference_crops, render_from_headshot, render_from_references
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.loop import train_lora
from pipeline.errors import ModelLoadError
from pipeline.styles import STYLES
from tests.harness import KLEIN, Harness, serving_worker


async def test_a_klein_worker_trains_and_renders_through_the_job_code(
    settings: Settings, selfie_dir: Path, tmp_path: Path, redis: Redis, klein_model: ServingModel
) -> None:
    klein = settings.model_copy(update=KLEIN)
    model = klein_model
    assert pipeline_family(model.pipe) is Family.FLUX2
    assert model.lora_slot is not None and model.training_slot is None  # renders through the slot, trains eagerly

    async with Harness(klein, model, tmp_path / "out") as harness:
        await harness.train_to_ready(selfie_dir)
        await harness.say("/headshot studio")
        await harness.run_worker()
        await harness.wait_state(SessionState.READY)
        # The actions on a headshot, klein's way: the headshot as the reference image, the user's LoRA on.
        for action in ("/more 1", "/remix 1 on a rooftop at dusk", "/upscale 2"):
            await harness.say(action)
            await harness.run_worker()
            await harness.wait_state(SessionState.READY)
    assert len(harness.port.headshots) == 2 + 2 + 2 + 1
    sizes = []
    for path in harness.port.headshots:
        with Image.open(path) as image:
            assert image.format == "PNG"
            sizes.append(image.size)
    assert sizes == [(56, 72)] * 6 + [(112, 144)]  # the tiny klein's 4:5 at 64x64 px; an upscale twice that
    assert model.lora_slot.active is None  # the user's LoRA left the warm pipeline with the request


async def test_klein_trains_on_the_base_model_and_renders_on_the_distilled_one(
    settings: Settings, selfie_dir: Path, tmp_path: Path, redis: Redis
) -> None:
    # klein's recipe: LoRAs train on FLUX.2-klein-base-4B and render on the step-distilled FLUX.2-klein-4B.
    klein = settings.model_copy(update={**KLEIN, "train_model": "tiny-flux2-base"})
    model = prepare_model(klein)
    trainer = model.training_pipe
    assert trainer.config.is_distilled is False and model.pipe.config.is_distilled is True
    assert trainer.transformer is not model.pipe.transformer  # the base's own weights
    assert trainer.text_encoder is model.pipe.text_encoder and trainer.vae is model.pipe.vae  # loaded once
    async with Harness(klein, model, tmp_path / "out") as harness:
        await harness.train_to_ready(selfie_dir)
        await harness.say("/headshot studio")
        await harness.run_worker()
        await harness.wait_state(SessionState.READY)
    assert len(harness.port.headshots) == 2
    # The base's LoRA rendered through the distilled model's slot and left both as they were.
    assert model.lora_slot.active is None and not getattr(trainer.transformer, "peft_config", None)


def test_a_training_model_of_another_architecture_is_refused_by_name(model_cache: Path, tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        model="tiny-flux2",
        train_model="tiny",
        device="cpu",
        data_dir=tmp_path,
        model_cache_dir=model_cache,
    )
    with pytest.raises(ModelLoadError, match="HEADSHOT_TRAIN_MODEL 'tiny' is not the architecture of HEADSHOT_MODEL"):
        prepare_model(settings)


async def test_klein_previews_from_the_selfies_before_and_while_the_lora_trains(
    settings: Settings, selfie_dir: Path, tmp_path: Path, redis: Redis, klein_model: ServingModel, tiny_model: Any
) -> None:
    assert model_features(tiny_model) == ()  # SDXL renders no one from photos: its workers offer no previews
    klein = settings.model_copy(update=KLEIN)
    assert klein.redis_url is not None
    async with Harness(klein, klein_model, tmp_path / "out") as harness:
        harness.start_delivery()
        async with serving_worker(klein, klein_model, offers=WorkerFeature.REFERENCES):
            # 1. Selfies, no model: /headshot renders the style from the selfies, and collecting goes on.
            await harness.say(f"/train {selfie_dir}")
            assert "straight from your selfies" in await harness.say("/headshot studio")
            await harness.wait_state(SessionState.COLLECTING, timeout_s=60)
            assert len(harness.port.headshots) == 2
            # 2. /train start: the previews come first, then the model.
            await harness.say("/train start")
            await harness.wait_state(SessionState.READY, timeout_s=120)
        chat = "\n".join(harness.lines)
        assert "↻ More" not in chat  # a preview is kept or not; its actions would need a model
        assert chat.index(texts.PREVIEW_READY_TRAINING) < chat.index(texts.TRAINED)
        assert chat.count("Preview · ") == 4  # two captions per preview, each named as one
        assert len(harness.port.headshots) == 4
        # 3. Previews are the user's images like any other: /delete erases them.
        images = await harness.app.store.images(harness.chat.chat.user_key)
        assert len(images) == 4
        await harness.say("/delete")
        await harness.say("/delete confirm")
        for image in images:
            assert not await harness.app.core.storage.exists(image.storage_key)


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_compiled_klein_worker_swaps_users_without_compiling_again(
    model_cache: Path, selfie_dir: Path, tmp_path: Path
) -> None:
    import torch._dynamo.config
    import torch._dynamo.utils

    def graphs() -> int:
        return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])

    # "eager": dynamo's tracing and guards (what decides a recompile) without inductor's codegen on a CPU.
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        model="tiny-flux2",
        device="cpu",
        data_dir=tmp_path / "data",
        model_cache_dir=model_cache,
        lora_rank=4,
        headshots_per_request=2,
        compile_unet=True,
        compile_backend="eager",
        warm_aspects="profile",  # the shape is SDXL's case (test_model_setup); this one is klein's references
    )
    before = graphs()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        model = prepare_model(settings)
        started = graphs()
        assert started > before  # rendering was compiled and warmed at start
        assert model.pipe.transformer._compiled_call_impl is not None and model.training_slot is None
        # Two users trained as the worker's train_lora runs them, then each one's request through the warm slot.
        selfies = [Image.open(path).convert("RGB") for path in sorted(selfie_dir.iterdir())]
        loras = [
            train_lora(model.pipe, selfies, TrainingConfig(rank=4, steps=4, seed=seed), tmp_path / str(seed)).lora_path
            for seed in (1, 2)
        ]
        for lora in (*loras, loras[0]):
            generate_headshots(
                model.pipe, STYLES["actor"], count=2, seed=1, steps=2, lora_path=lora, lora_slot=model.lora_slot
            )
        # A preview's renders (three candidates for two) and actions from a headshot: their reference tokens were
        # warmed at start too.
        crops = reference_crops(model.pipe, selfies)
        render_from_references(model.pipe, crops, STYLES["actor"], count=3, seed=1, lora_slot=model.lora_slot)
        headshot = selfies[0].resize((56, 72))
        for count, size in ((3, (56, 72)), (1, (112, 144))):
            render_from_headshot(
                model.pipe,
                headshot,
                STYLES["actor"],
                size=size,
                count=count,
                seed=1,
                steps=2,
                lora_path=loras[1],
                lora_slot=model.lora_slot,
            )
    assert graphs() == started, "a user's training or request compiled a new graph"


def test_what_klein_cannot_compile_yet_fails_at_start_by_name(model_cache: Path, tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        model="tiny-flux2",
        device="cpu",
        data_dir=tmp_path,
        model_cache_dir=model_cache,
        compile_unet=True,
        compile_training=True,
        compile_scope="unet",
    )
    with pytest.raises(ValueError, match="HEADSHOT_COMPILE_TRAINING=true is not built for FLUX.2"):
        prepare_model(settings)
    # The fused ResNet blocks are SDXL's UNet's: asked for on klein, refused by name too.
    fused = settings.model_copy(update={"compile_training": False, "compile_unet": False, "render_fused_resnets": True})
    with pytest.raises(ValueError, match="HEADSHOT_RENDER_FUSED_RESNETS=true is not built for FLUX.2"):
        prepare_model(fused)
    trained = settings.model_copy(
        update={"compile_training": False, "compile_unet": False, "train_fused_resnets": True}
    )
    with pytest.raises(ValueError, match="HEADSHOT_TRAIN_FUSED_RESNETS=true is not built for FLUX.2"):
        prepare_model(trained)
