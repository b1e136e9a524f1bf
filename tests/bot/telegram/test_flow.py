"""The whole product in Telegram: real PTB against the stand-in, real Redis, a real arq worker on the tiny model."""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import pytest
from PIL import Image

from bot.core.session import SessionState
from bot.local.samples import make_sample_selfies
from tests.bot.flows import queued_request
from tests.bot.telegram.conftest import ALICE, BOB, TelegramBot
from tests.bot.telegram.standin import BotApiStandin, Sent, TgUser
from tests.harness import run_burst_worker

PNG = b"\x89PNG"


def _with_text(standin: BotApiStandin, user: TgUser, fragment: str) -> Sent | None:
    found = [sent for sent in standin.messages(user.id) if fragment in sent.text]
    return found[-1] if found else None


def _photos(standin: BotApiStandin, user: TgUser) -> list[Sent]:
    return [sent for sent in standin.messages(user.id) if sent.kind == "photo"]


async def _train(bot: TelegramBot, standin: BotApiStandin, user: TgUser, photos: list[bytes]) -> Sent:
    """Album captioned /train, then the Start training button; returns the progress message."""
    await standin.send_album(user, photos, caption="/train")
    status = await standin.wait_for(lambda: _with_text(standin, user, "selfies accepted ("), what="enough selfies")
    await standin.press(user, status, "Start training")
    return await standin.wait_for(lambda: _with_text(standin, user, "Training queued"), what="the ack")


async def test_album_train_button_progress_media_group_favorites(
    telegram_bot: TelegramBot, standin: BotApiStandin, selfie_dir: Path
) -> None:
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())]

    # 1. Album with /train, then the button: acknowledged at once with the queue position and a Cancel button.
    progress = await _train(telegram_bot, standin, ALICE, photos)
    assert "position 1" in progress.text and "Cancel" in progress.buttons
    standin.fail_next("editMessageText", retry_after=1)  # Telegram's flood control hits the first progress edit

    # 2. Training: progress edits that one message, throttled, and survives the 429. 60 steps: the 429 holds edits
    #    back for a second, and the suite's 20 tiny steps ended inside it on a fast CPU (no percentage ever shown).
    await run_burst_worker(telegram_bot.settings.model_copy(update={"train_steps": 60}), telegram_bot.model)
    await standin.wait_for(lambda: _with_text(standin, ALICE, "Your model is ready"), what="the trained message")
    await standin.wait_for(lambda: progress.text == "Training finished: 100%.", what="the final progress text")
    shown = [text for _, text in progress.history]
    assert any("Training your model:" in text and "%" in text for text in shown), shown
    times = [at for at, _ in progress.history[1:-1]]  # the final text is never held back by the throttle
    assert all(later - earlier >= 0.25 for earlier, later in zip(times, times[1:], strict=False)), times
    edits = [
        call for call in standin.called("editMessageText") if call.params["message_id"] == str(progress.message_id)
    ]
    refused = next(index for index, call in enumerate(edits) if call.status == 429)
    retry = edits[refused + 1]
    assert retry.params["text"] == edits[refused].params["text"] and retry.at - edits[refused].at >= 1.0
    assert "Training your model: starting…" in shown  # the refused text was shown after all, not lost

    # 3. /headshot without a style offers a keyboard of styles, then of backdrops, outfits and shapes, each with
    # the style's own first; the last press renders as chosen.
    await standin.send_text(ALICE, "/headshot")
    keyboard = await standin.wait_for(lambda: _with_text(standin, ALICE, "Which style?"), what="the style keyboard")
    assert {"LinkedIn profile", "Studio portrait"} <= set(keyboard.buttons)
    for press, question in (
        ("LinkedIn profile", "which backdrop?"),
        ("Office (default)", "what to wear?"),
        ("Dark suit", "which shape?"),
        ("Portrait 2:3", "Rendering 2"),
    ):
        await standin.press(ALICE, keyboard, press)
        keyboard = await standin.wait_for(partial(_with_text, standin, ALICE, question), what=question)
    assert "LinkedIn profile (dark suit, 2:3)" in keyboard.text
    style = (await queued_request(telegram_bot.app)).style
    assert style.aspect == (2, 3) and "dark suit, soft office background bokeh" in style.prompt
    await telegram_bot.run_worker()
    await standin.wait_for(lambda: len(_photos(standin, ALICE)) == 2, what="the headshots")
    with Image.open(io.BytesIO(_photos(standin, ALICE)[0].data or b"")) as image:
        assert image.width < image.height  # 2:3, as pressed

    # 4. Each headshot is a photo of its own (no album: a reaction on an album lands on its first photo), a real
    # PNG with its caption and its own ★ button, so every favorite names the one image the user sees.
    headshots = _photos(standin, ALICE)
    assert all(sent.media_group_id is None for sent in headshots)
    assert all(sent.data and sent.data.startswith(PNG) for sent in headshots)
    assert [sent.text.split(" · ")[0] for sent in headshots] == ["#1", "#2"]
    assert headshots[1].buttons == {
        "★ Keep #2": "/favorite 2",
        "↻ More #2": "/more 2",
        "✎ Remix #2": "/remix 2",
        "⤢ Upscale #2": "/upscale 2",
    }

    # 5. A ★ press and a reaction each keep a favorite; /favorites sends the originals as documents.
    await standin.press(ALICE, headshots[1], "★ Keep #2")
    await standin.wait_for(lambda: _with_text(standin, ALICE, "Saved headshot #2"), what="the favorite by button")
    await standin.react(ALICE, headshots[0].message_id, "❤")
    await standin.wait_for(lambda: _with_text(standin, ALICE, "(2 in all)"), what="the favorite by reaction")
    await standin.send_text(ALICE, "/favorites")
    await standin.wait_for(
        lambda: len([s for s in standin.messages(ALICE.id) if s.kind == "document"]) == 2, what="two documents"
    )
    documents = [sent for sent in standin.messages(ALICE.id) if sent.kind == "document"]
    assert {sent.data for sent in documents} == {sent.data for sent in headshots}

    # 6. /status tells where things are.
    await standin.send_text(ALICE, "/status")
    await standin.wait_for(lambda: _with_text(standin, ALICE, "Headshots so far: 2"), what="the status")

    # 7. The Upscale button under #2 renders it at twice the size, posted as headshot #3 with buttons of its own.
    await standin.press(ALICE, headshots[1], "⤢ Upscale #2")
    await standin.wait_for(lambda: _with_text(standin, ALICE, "Upscaling #2"), what="the upscale ack")
    await telegram_bot.run_worker()
    await standin.wait_for(lambda: len(_photos(standin, ALICE)) == 3, what="the upscaled headshot")
    upscaled = _photos(standin, ALICE)[2]
    assert upscaled.text.startswith("#3 · ") and upscaled.buttons["⤢ Upscale #3"] == "/upscale 3"
    assert _with_text(standin, ALICE, "Here is #2 at twice the size.") is not None


async def test_restart_mid_session_keeps_selfies_and_still_delivers(
    telegram_bot: TelegramBot, standin: BotApiStandin, selfie_dir: Path
) -> None:
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())]
    await standin.send_album(ALICE, photos[:3], caption="/train")
    status = await standin.wait_for(lambda: _with_text(standin, ALICE, "selfies accepted ("), what="3 accepted")

    # 1. The bot restarts; the button under the old status message still starts training on the kept selfies.
    await telegram_bot.restart()
    await standin.press(ALICE, status, "Start training")
    await standin.wait_for(lambda: _with_text(standin, ALICE, "Training queued"), what="the ack after restart")

    # 2. The bot is down while the worker trains; once back, it delivers what happened meanwhile.
    await telegram_bot.stop()
    await telegram_bot.run_worker()
    assert _with_text(standin, ALICE, "Your model is ready") is None
    await telegram_bot.start()
    await standin.wait_for(lambda: _with_text(standin, ALICE, "Your model is ready"), what="the late delivery")

    await standin.send_text(ALICE, "/headshot studio")
    await standin.wait_for(lambda: _with_text(standin, ALICE, "Rendering 2"), what="the render ack")
    await telegram_bot.run_worker()
    await standin.wait_for(lambda: len(_photos(standin, ALICE)) == 2, what="two headshots")
    assert standin.texts(ALICE.id).count("Your model is ready") == 1  # delivered once, not twice


@pytest.mark.parametrize("concurrency", ["two jobs", "overlap"])
async def test_two_users_at_once_never_see_each_others_images(
    telegram_bot: TelegramBot, standin: BotApiStandin, enough_selfies: list[bytes], tmp_path: Path, concurrency: str
) -> None:
    bob_photos = [path.read_bytes() for path in make_sample_selfies(tmp_path / "bob", count=3, seed=7)]

    # 1. Both send albums and start training at the same time; one worker trains both, two jobs at once: the shared
    #    model and its LoRA slots are what could mix users up, so the worker runs as HEADSHOT_WORKER_JOBS=2 does, or
    #    as HEADSHOT_WORKER_OVERLAP does by default (the second job taken while the first one's host work goes on).
    update = {"worker_jobs": 2, "worker_overlap": False} if concurrency == "two jobs" else {"worker_overlap": True}
    telegram_bot.settings = telegram_bot.settings.model_copy(update=update)
    await standin.send_album(ALICE, enough_selfies, caption="/train")
    await standin.send_album(BOB, bob_photos, caption="/train")
    for user in (ALICE, BOB):
        status = await standin.wait_for(partial(_with_text, standin, user, "selfies accepted ("), what="selfies")
        await standin.press(user, status, "Start training")
    for user in (ALICE, BOB):  # both queued before the worker starts (a burst worker stops at an empty queue)
        await standin.wait_for(partial(_with_text, standin, user, "Training queued"), what="training ack")
    trained = await telegram_bot.run_worker()
    for user in (ALICE, BOB):
        await telegram_bot.wait_state(user, SessionState.READY)

    # 2. Both render; each chat gets its own two headshots and nothing else.
    await standin.send_text(ALICE, "/headshot linkedin")
    await standin.send_text(BOB, "/headshot casual")
    for user in (ALICE, BOB):
        await standin.wait_for(partial(_with_text, standin, user, "Rendering 2"), what="render ack")
    rendered = await telegram_bot.run_worker()
    for user in (ALICE, BOB):
        await standin.wait_for(lambda user=user: len(_photos(standin, user)) == 2, what="headshots")
    # Two jobs at once: each time, one job's torch section found the other's running and waited its turn (a render
    #    takes a second turn only for a face pass). Overlapping: the second job was taken only once the first was
    #    done with the GPU, so no section waited for another.
    assert trained.gpu.turns == 2 and rendered.gpu.turns >= 2
    if concurrency == "two jobs":
        assert trained.gpu.waited >= 1 and rendered.gpu.waited >= 1
    else:
        assert trained.gpu.waited == 0 and rendered.gpu.waited == 0

    storage = telegram_bot.settings.resolved_storage_dir
    for user, other in ((ALICE, BOB), (BOB, ALICE)):
        mine = {path.read_bytes() for path in storage.rglob("*.png") if f"telegram%3A{user.id}" in str(path)}
        received = {sent.data for sent in _photos(standin, user)}
        assert len(received) == 2 and received <= mine, f"{user.first_name} got images that are not theirs"
        assert not received & {sent.data for sent in _photos(standin, other)}
    styles = {user.first_name: {sent.text.split(" · ")[1] for sent in _photos(standin, user)} for user in (ALICE, BOB)}
    assert styles == {"Alice": {"LinkedIn profile"}, "Bob": {"Casual"}}

    # 3. Numbers are per user: Bob's ★ #1 is Bob's headshot; Alice's favorites stay empty.
    await standin.press(BOB, _photos(standin, BOB)[0], "★ Keep #1")
    await standin.wait_for(lambda: _with_text(standin, BOB, "Saved headshot #1"), what="Bob's favorite")
    await standin.send_text(ALICE, "/favorites")
    await standin.wait_for(lambda: _with_text(standin, ALICE, "No favorites yet"), what="Alice's empty favorites")
