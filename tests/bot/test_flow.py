"""The whole product through the local chat frontend: real Redis, real arq worker, real tiny SDXL + peft."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from redis.asyncio import Redis

from bot.core import texts
from bot.core.session import SessionState
from jobs.settings import Settings
from tests.bot.flows import queued_request
from tests.harness import Harness


async def test_train_render_react_and_favorites(
    settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis, selfie_dir: Path
) -> None:
    # The first headshots on (the shared settings turn them off), three: not a /headshot's two.
    first_on = settings.model_copy(update={"first_headshots": 3})
    async with Harness(first_on, tiny_model, tmp_path / "out") as harness:
        await _train_render_react_and_favorites(harness, selfie_dir)


async def _train_render_react_and_favorites(harness: Harness, selfie_dir: Path) -> None:
    harness.start_delivery()

    # 1. /train with selfies attached: a verdict per photo and the running count.
    answer = await harness.say(f"/train {selfie_dir}")
    assert answer.count("accepted") >= 4
    assert "4 selfies accepted" in answer and "/train start" in answer

    # 2. Confirm: one job queued, acknowledged at once with its queue position.
    answer = await harness.say("/train start")
    assert "Training queued (position 1)" in answer
    await harness.run_worker()

    # 3. The model's first headshots come unasked: the news says so, their acknowledgement follows, and they are
    # rendered (by the training's worker already, or by the next) as /headshot linkedin renders.
    await harness.seconds_until_said("Rendering 3 LinkedIn profile headshots", timeout_s=60)
    await harness.run_worker()
    await harness.wait_state(SessionState.READY)
    chat = "\n".join(harness.lines)
    assert "Training your model:" in chat and "(updated)" in chat  # progress edited the one message
    assert texts.TRAINED_FIRST_HEADSHOTS.format(style="LinkedIn profile") in chat
    assert chat.index("Your model is ready") < chat.index("Rendering 3 LinkedIn profile headshots")
    firsts = [m.text for m in harness.port.messages.values() if m.image_path]
    assert len(firsts) == 3 and all(" · LinkedIn profile · seed " in caption for caption in firsts)

    # 4. /headshot asks style, backdrop, outfit and shape with buttons (the local chat shows each as the command
    # to type); the headshots render as chosen, real PNGs back in the chat, each with its seed.
    answer = await harness.tap(await harness.say("/headshot"), "LinkedIn profile")
    assert "LinkedIn profile: which backdrop?" in answer and "[Office (default)]" in answer
    answer = await harness.tap(answer, "Studio grey")
    assert "LinkedIn profile (studio grey): what to wear?" in answer
    answer = await harness.tap(await harness.tap(answer, "Blazer (default)"), "Square 1:1 (avatar)")
    assert "Rendering 2 LinkedIn profile (studio grey, 1:1) headshots" in answer
    style = (await queued_request(harness.app)).style
    assert style.aspect == (1, 1) and "business casual blazer, neutral grey studio backdrop" in style.prompt
    await harness.run_worker()
    await harness.wait_state(SessionState.READY)
    headshots = harness.port.headshots
    assert len(headshots) == 3 + 2
    for path in headshots[3:]:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width == image.height > 0
    assert (harness.port.out_dir / "contact-sheet.png").is_file()
    captions = [m.text for m in harness.port.messages.values() if m.image_path]
    assert all("seed" in caption for caption in captions)

    # 5. A reaction on a headshot makes it a favorite; /favorites sends the original file back.
    first = next(number for number, message in harness.port.messages.items() if message.image_path)
    answer = await harness.say(f"react {first}")
    assert "favorites (1 in all)" in answer
    answer = await harness.say("/favorites")
    assert "favorite headshots (1)" in answer
    assert harness.port.files[0].read_bytes() == harness.port.messages[first].image_path.read_bytes()  # type: ignore[union-attr]

    # 6. /status tells the truth about where things are.
    answer = await harness.say("/status")
    assert "Session: ready" in answer and "Headshots so far: 5" in answer


async def test_double_train_start_enqueues_one_job(harness: Harness, selfie_dir: Path) -> None:
    await harness.say(f"/train {selfie_dir}")
    first = await harness.say("/train start")
    second = await harness.say("/train start")
    assert "queued" in first
    assert "already training" in second
    queued = await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name)
    assert [job.function for job in queued] == ["train_lora"]


async def test_cancel_training_keeps_selfies_and_allows_retry(harness: Harness, selfie_dir: Path) -> None:
    harness.start_delivery()
    await harness.say(f"/train {selfie_dir}")
    await harness.say("/train start")
    answer = await harness.say("/cancel")
    assert "Training cancelled" in answer and "selfies are kept" in answer
    await harness.run_worker()  # the aborted job is skipped, not run
    assert await harness.session_state() == SessionState.COLLECTING
    assert await harness.selfie_count() == 4
    # A retry gets a fresh job id and trains for real.
    assert "queued" in await harness.say("/train start")
    await harness.run_worker()
    await harness.wait_state(SessionState.READY)


async def test_delete_erases_rows_and_files(harness: Harness, selfie_dir: Path) -> None:
    await harness.say(f"/train {selfie_dir}")
    storage_root = harness.settings.resolved_storage_dir
    assert any(storage_root.rglob("*.jpg"))
    assert "Are you sure" in await harness.say("/delete")
    assert "erased" in await harness.say("/delete confirm")
    assert not any(path.is_file() for path in storage_root.rglob("*"))
    assert await harness.session_state() is None
    assert "nothing to confirm" in await harness.say("/delete confirm")
