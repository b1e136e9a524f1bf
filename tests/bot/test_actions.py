"""Actions on one headshot through the local chat: /more, /remix and /upscale render for real on the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.core.session import SessionState
from bot.local.chat import LocalChat
from jobs.contract.keys import user_prefix
from jobs.contract.payloads import RenderMode
from pipeline.diffusion.generation import headshot_size
from tests.bot.flows import say_as, seed_ready
from tests.harness import Harness


@pytest.fixture(scope="session")
def small_lora(tiny_pipe: Any, selfie_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real LoRA file, trained in a few steps: what a worker loads for any action."""
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import train_lora

    photos = [Image.open(path).convert("RGB") for path in sorted(selfie_dir.iterdir())[:2]]
    result = train_lora(tiny_pipe, photos, TrainingConfig(rank=4, steps=4, seed=1), tmp_path_factory.mktemp("lora"))
    return Path(result.lora_path)


async def _ready(harness: Harness, selfie_dir: Path, lora: Path) -> None:
    """READY with two posted headshots (#1, #2) and the user's LoRA in storage; delivery running."""
    await seed_ready(harness, selfie_dir)
    session = await harness.app.store.current_session(harness.chat.chat.user_key)
    assert session is not None and session.lora_key is not None
    await harness.app.core.storage.put(session.lora_key, lora.read_bytes())
    harness.start_delivery()


async def _run(harness: Harness) -> None:
    await harness.run_worker()
    await harness.wait_state(SessionState.READY)


def _captions(harness: Harness) -> list[str]:
    return [message.text for message in harness.port.messages.values() if message.image_path]


async def test_more_posts_numbered_variations_with_their_own_buttons(
    harness: Harness, selfie_dir: Path, small_lora: Path
) -> None:
    await _ready(harness, selfie_dir, small_lora)
    answer = await harness.say("/more 1")
    assert "Rendering 2 variations of #1" in answer and "/cancel" in answer
    await _run(harness)
    chat = "\n".join(harness.lines)
    assert "Here are your variations of #1" in chat
    captions = _captions(harness)
    assert [caption.split(" · ")[:2] for caption in captions[2:]] == [
        ["#3", "LinkedIn profile"],
        ["#4", "LinkedIn profile"],
    ]
    assert "[↻ More #4] -> type: /more 4" in chat and "[⤢ Upscale #3] -> type: /upscale 3" in chat
    with Image.open(harness.port.headshots[2]) as variant:
        assert variant.size == headshot_size(harness.model.pipe, (4, 5))
    rows = await harness.app.store.images(harness.chat.chat.user_key)
    assert all(row.storage_key.startswith(user_prefix(harness.chat.chat.user_key)) for row in rows)


async def test_remix_renders_the_users_words_into_the_original_style(
    harness: Harness, selfie_dir: Path, small_lora: Path
) -> None:
    await _ready(harness, selfie_dir, small_lora)
    answer = await harness.say("/remix 2 on a beach at sunset")
    assert "Remixing #2 into 2 new headshots" in answer
    job = await harness.app.store.active_job(harness.chat.chat.user_key)
    assert job is not None and job.request is not None and job.request.mode == RenderMode.REMIX
    assert job.request.style.render_prompt().startswith(
        "professional linkedin headshot photo of sks person, on a beach at sunset, friendly smile"
    )
    await _run(harness)
    assert "Here are your remixes of #2" in "\n".join(harness.lines)
    assert [caption.split(" · ")[1] for caption in _captions(harness)[2:]] == ["LinkedIn profile, remixed"] * 2


async def test_upscale_doubles_the_size_and_delete_erases_it(
    harness: Harness, selfie_dir: Path, small_lora: Path
) -> None:
    await _ready(harness, selfie_dir, small_lora)
    assert "Upscaling #1 to twice its size" in await harness.say("/upscale 1")
    await _run(harness)
    assert "Here is #1 at twice the size." in "\n".join(harness.lines)
    assert len(harness.port.headshots) == 3 and _captions(harness)[2].startswith("#3 · ")
    width, height = headshot_size(harness.model.pipe, (4, 5))
    with Image.open(harness.port.headshots[2]) as big:
        assert big.size == (2 * width, 2 * height)
    # The upscale is the user's like any headshot: /delete takes it too.
    storage = harness.settings.resolved_storage_dir
    assert len(list(storage.rglob("*.png"))) == 3
    await harness.say("/delete")
    assert "erased" in await harness.say("/delete confirm")
    assert not any(path.is_file() for path in storage.rglob("*"))


async def test_actions_are_refused_with_a_reason_and_cancel_stops_one(harness: Harness, selfie_dir: Path) -> None:
    # No model yet, then a model without headshots.
    bob = LocalChat(harness.app.service, harness.port, "bob")
    assert "train your model first" in await say_as(harness, bob, "/more 1")
    store = harness.app.store
    await store.ensure_user(bob.chat.user_key, "local", "bob")
    session = await store.new_session(bob.chat.user_key, SessionState.READY)
    await store.update_session(bob.chat.user_key, session.id, lora_key="users/local%3Abob/lora.safetensors")
    assert "You have no headshots yet" in await say_as(harness, bob, "/upscale 1")

    await seed_ready(harness, selfie_dir)
    harness.start_delivery()
    # A number that names no headshot; a remix without words, or with too many.
    assert "There is no headshot #9: you have 2. Send /more" in await harness.say("/more 9")
    assert "There is no headshot #abc" in await harness.say("/upscale abc")
    assert "/remix 2 <words>, e.g. /remix 2 on a beach" in await harness.say("/remix 2")
    assert "keep it to 300 or fewer" in await harness.say("/remix 1 " + "sunny " * 60)
    assert await store.active_job(harness.chat.chat.user_key) is None  # nothing was queued by a refusal

    # One action at a time; /cancel stops it, and the session is free again.
    assert "Upscaling #1" in await harness.say("/upscale 1")
    assert "still rendering your last request" in await harness.say("/more 2")
    assert "Rendering cancelled" in await harness.say("/cancel")
    await harness.run_worker()  # the aborted job is skipped
    assert await harness.session_state() == SessionState.READY
    assert len(harness.port.headshots) == 2
