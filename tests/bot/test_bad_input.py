"""Bad input gets a clear reply that says what to do, and loses nothing already in the session."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bot.core.session import SessionState
from bot.core.types import ChatRef, IncomingMessage
from tests.harness import Harness


@pytest.fixture
def bad_files(tmp_path: Path, selfie_dir: Path) -> dict[str, Path]:
    folder = tmp_path / "bad"
    folder.mkdir()
    good = sorted(selfie_dir.iterdir())[0].read_bytes()
    files = {
        "text": folder / "resume.pdf",
        "truncated": folder / "cut.jpg",
        "tiny": folder / "dot.png",
    }
    files["text"].write_bytes(b"%PDF-1.4 this is a document, not a photo\n")
    files["truncated"].write_bytes(good[: len(good) // 2])
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), "red").save(buffer, format="PNG")
    files["tiny"].write_bytes(buffer.getvalue())
    return files


async def test_bad_files_are_refused_one_by_one_and_good_ones_kept(
    harness: Harness, selfie_dir: Path, bad_files: dict[str, Path]
) -> None:
    first_good = sorted(selfie_dir.iterdir())[0]
    await harness.say(f"/train {first_good}")
    assert await harness.selfie_count() == 1

    answer = await harness.say(f"{bad_files['text']}")
    assert "✗ resume.pdf" in answer and "not a photo" in answer
    answer = await harness.say(f"{bad_files['truncated']}")
    assert "✗ cut.jpg" in answer and ("cut off" in answer or "incomplete" in answer)
    answer = await harness.say(f"{bad_files['tiny']}")
    assert "✗ dot.png" in answer and "1x1" in answer

    # Nothing bad was stored and the good selfie is still there.
    assert await harness.selfie_count() == 1
    assert "1 of 3 selfies accepted" in answer
    assert await harness.session_state() == SessionState.COLLECTING


async def test_headshot_before_training_says_to_train(harness: Harness) -> None:
    answer = await harness.say("/headshot linkedin")
    assert "train your model first" in answer and "/train" in answer
    assert await harness.session_state() is None


async def test_unknown_style_names_the_choices(harness: Harness, selfie_dir: Path) -> None:
    await harness.train_to_ready(selfie_dir)
    answer = await harness.say("/headshot vaporwave")
    assert "no style called 'vaporwave'" in answer and "linkedin" in answer and "corporate" in answer
    assert await harness.session_state() == SessionState.READY
    queued = await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name)
    assert queued == []

    # Several words that name no preset are the user's own look; a description past the limit is refused by length.
    answer = await harness.say("/headshot " + "navy suit " * 40)
    assert "399 characters long; keep it to 300 or fewer" in answer
    assert await harness.session_state() == SessionState.READY
    answer = await harness.say("/headshot navy suit on a rooftop at dusk")
    assert "Rendering 2 Custom headshots" in answer
    await harness.run_worker()
    await harness.wait_state(SessionState.READY)
    assert len(harness.port.headshots) == 2
    assert all("· Custom ·" in m.text for m in harness.port.messages.values() if m.image_path)


async def test_train_start_without_selfies(harness: Harness) -> None:
    assert "Send 3 to 5 selfies" in await harness.say("/train")
    answer = await harness.say("/train start")
    assert "haven't sent any selfies" in answer
    assert await harness.session_state() == SessionState.COLLECTING
    assert await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name) == []


async def test_train_start_with_too_few_selfies(harness: Harness, selfie_dir: Path) -> None:
    await harness.say(f"/train {sorted(selfie_dir.iterdir())[0]}")
    answer = await harness.say("/train start")
    assert "1 of the 3 selfies" in answer and "Send 2 more" in answer
    assert await harness.selfie_count() == 1


async def test_group_chat_is_refused_and_nothing_stored(harness: Harness, selfie_dir: Path) -> None:
    group = ChatRef("local", "bob", chat_id="team-room", is_private=False)
    photo = sorted(selfie_dir.iterdir())[0]
    from bot.core.types import Attachment

    message = IncomingMessage(group, "/train", (Attachment(photo.name, photo.read_bytes()),))
    before = len(harness.lines)
    await harness.app.service.handle_message(message, harness.port)
    assert "private chat" in "\n".join(harness.lines[before:])
    assert await harness.app.store.current_session(group.user_key) is None
    assert not any(harness.settings.resolved_storage_dir.rglob("*.jpg"))


async def test_unknown_command_and_reaction_on_plain_message(harness: Harness) -> None:
    assert "don't know the command '/frobnicate'" in await harness.say("/frobnicate")
    assert "react works on headshots" in await harness.say("react 1")


async def test_too_many_selfies_are_refused_with_the_limit(harness: Harness, selfie_dir: Path, tmp_path: Path) -> None:
    from bot.local.samples import make_sample_selfies

    more = make_sample_selfies(tmp_path / "more", count=6, seed=1)
    answer = await harness.say("/train " + " ".join(str(path) for path in more))
    assert answer.count("accepted") >= 5 and "5 selfies, the most I use" in answer
    assert await harness.selfie_count() == 5
