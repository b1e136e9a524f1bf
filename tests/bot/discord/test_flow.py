"""The whole product in Discord: real discord.py against the stand-in, real Redis, an arq worker on the tiny model."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from bot.core.session import SessionState
from bot.local.samples import make_sample_selfies
from tests.bot.discord.conftest import ALICE, BOB, DiscordBot
from tests.bot.discord.standin import DcUser, DiscordStandin, Sent
from tests.bot.flows import queued_request
from tests.harness import run_burst_worker

PNG = b"\x89PNG"


def _jpeg(name: str, data: bytes) -> tuple[str, bytes, str]:
    return (name, data, "image/jpeg")


async def _train(bot: DiscordBot, standin: DiscordStandin, user: DcUser, photos: list[bytes]) -> Sent:
    """``/train`` with the photos attached, then the Start training button; returns the progress message."""
    await standin.command(user, "train", files=[_jpeg(f"selfie{n}.jpg", data) for n, data in enumerate(photos, 1)])
    status = await standin.wait_for(lambda: standin.with_text(user, "selfies accepted ("), what="enough selfies")
    await standin.press(user, status, "Start training")
    return await standin.wait_for(lambda: standin.with_text(user, "Training queued"), what="the ack")


async def test_train_command_button_progress_results_star_and_favorites(
    discord_bot: DiscordBot, standin: DiscordStandin, selfie_dir: Path
) -> None:
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())]

    # 1. /train with two photos attached: deferred at once, one status message with a verdict per photo.
    await standin.command(ALICE, "train", files=[_jpeg("a.jpg", photos[0]), _jpeg("b.jpg", photos[1])])
    status = await standin.wait_for(lambda: standin.with_text(ALICE, "2 of 3 selfies"), what="the selfie status")
    assert "✓ a.jpg: accepted" in status.content and "✓ b.jpg: accepted" in status.content and not status.buttons
    assert standin.called("POST", "/callback")[0].body["type"] == 5  # "thinking…" first
    await standin.wait_for(lambda: standin.with_text(ALICE, "`/train` + 2 photos"), what="the echo")

    # 2. Two more dropped into the DM as one plain message: the same status is edited, now with the button.
    await standin.send_dm(ALICE, "", [_jpeg("c.jpg", photos[2]), _jpeg("d.jpg", photos[3])])
    await standin.wait_for(lambda: "4 selfies accepted" in status.content, what="the edited status")
    assert "✓ c.jpg: accepted" in status.content and status.buttons["Start training"] == "hs:/train start"
    assert sum("selfies accepted" in sent.content for sent in standin.messages(ALICE)) == 1

    # 3. The button starts training: acknowledged with the queue position and a Cancel button.
    await standin.press(ALICE, status, "Start training")
    progress = await standin.wait_for(lambda: standin.with_text(ALICE, "Training queued"), what="the ack")
    assert "position 1" in progress.content and "Cancel" in progress.buttons

    # 4. Training: progress edits that one message, throttled, and survives a 429 from Discord. 60 steps: the 429
    #    holds edits back for a second, and the suite's 20 tiny steps can end inside it on a fast CPU.
    standin.fail_next("PATCH", f"/messages/{progress.id}", retry_after=1.0)
    await run_burst_worker(discord_bot.settings.model_copy(update={"train_steps": 60}), discord_bot.model)
    await standin.wait_for(lambda: standin.with_text(ALICE, "Your model is ready"), what="the trained message")
    await standin.wait_for(lambda: progress.content == "Training finished: 100%.", what="the final progress text")
    assert progress.buttons == {}  # the final text drops the Cancel button
    shown = [text for _, text in progress.history]
    assert "Training your model: starting…" in shown  # the text refused with 429 was shown after all
    assert any("Training your model:" in text and "%" in text for text in shown), shown
    times = [at for at, _ in progress.history[1:-1]]  # the final text is never held back by the throttle
    assert all(later - earlier >= 0.25 for earlier, later in zip(times, times[1:], strict=False)), times
    edits = standin.called("PATCH", f"/messages/{progress.id}")
    refused = next(index for index, call in enumerate(edits) if call.status == 429)
    retry = edits[refused + 1]
    assert retry.body["content"] == edits[refused].body["content"] and retry.at - edits[refused].at >= 1.0

    # 5. /headshot without options asks style, backdrop, outfit and shape with buttons, each with the style's own
    # first; the last press renders as chosen. Each headshot is its own message with one PNG and its caption.
    await standin.command(ALICE, "headshot")
    keyboard = await standin.wait_for(lambda: standin.with_text(ALICE, "Which style?"), what="the style buttons")
    for press, question in (
        ("LinkedIn profile", "which backdrop?"),
        ("Bookshelf", "what to wear?"),
        ("Blazer (default)", "which shape?"),
        ("Square 1:1 (avatar)", "Rendering 2"),
    ):
        await standin.press(ALICE, keyboard, press)
        keyboard = await standin.wait_for(partial(standin.with_text, ALICE, question), what=question)
    style = (await queued_request(discord_bot.app)).style
    assert style.aspect == (1, 1) and "business casual blazer, bookshelf background bokeh" in style.prompt
    await discord_bot.run_worker()
    await standin.wait_for(lambda: len(standin.images(ALICE)) == 2, what="the headshots")
    headshots = standin.images(ALICE)
    assert [len(sent.files) for sent in headshots] == [1, 1]
    assert all(sent.files[0][1].startswith(PNG) for sent in headshots)
    assert [sent.content.split(" · ")[0] for sent in headshots] == ["#1", "#2"]
    assert headshots[0].buttons == {
        "★ Keep #1": "hs:/favorite 1",
        "↻ More #1": "hs:/more 1",
        "✎ Remix #1": "hs:/remix 1",
        "⤢ Upscale #1": "hs:/upscale 1",
    }

    # 6. A ★ press and a ⭐ reaction each keep a favorite; other emoji do nothing; /favorites sends the originals.
    await standin.press(ALICE, headshots[1], "★ Keep #2")
    await standin.wait_for(lambda: standin.with_text(ALICE, "Saved headshot #2"), what="the favorite by button")
    await standin.react(ALICE, headshots[0].id, "👍")
    await standin.react(ALICE, headshots[0].id, "⭐")
    await standin.wait_for(lambda: standin.with_text(ALICE, "(2 in all)"), what="the favorite by reaction")
    assert "Reactions mark favorites only" not in standin.texts(ALICE)
    await standin.command(ALICE, "favorites")
    originals = await standin.wait_for(lambda: [s for s in standin.images(ALICE) if len(s.files) == 2], what="files")
    assert {data for _, data in originals[0].files} == {sent.files[0][1] for sent in headshots}

    # 7. /status tells where things are.
    await standin.command(ALICE, "status")
    await standin.wait_for(lambda: standin.with_text(ALICE, "Headshots so far: 2"), what="the status")


async def test_restart_keeps_buttons_working_and_the_session_intact(
    discord_bot: DiscordBot, standin: DiscordStandin, selfie_dir: Path
) -> None:
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())]
    await standin.send_dm(ALICE, "/train", [_jpeg(f"s{n}.jpg", data) for n, data in enumerate(photos[:3])])
    status = await standin.wait_for(lambda: standin.with_text(ALICE, "selfies accepted ("), what="3 accepted")

    # 1. The bot restarts (a new client, a new gateway session); the old button still starts training.
    await discord_bot.restart()
    assert len(standin.identified) == 2
    await standin.press(ALICE, status, "Start training")
    await standin.wait_for(lambda: standin.with_text(ALICE, "Training queued"), what="the ack after restart")

    # 2. The bot is down while the worker trains; once back, it delivers what happened meanwhile, once.
    await discord_bot.stop()
    await discord_bot.run_worker()
    assert standin.with_text(ALICE, "Your model is ready") is None
    await discord_bot.start()
    await standin.wait_for(lambda: standin.with_text(ALICE, "Your model is ready"), what="the late delivery")
    # /headshot's options choose as its buttons do.
    await standin.command(ALICE, "headshot", {"style": "studio", "backdrop": "city", "aspect": "portrait"})
    await standin.wait_for(lambda: standin.with_text(ALICE, "Rendering 2"), what="the render ack")
    style = (await queued_request(discord_bot.app)).style
    assert style.title == "Studio portrait (city street, 2:3)" and "city street bokeh behind" in style.prompt
    await discord_bot.run_worker()
    await standin.wait_for(lambda: len(standin.images(ALICE)) == 2, what="the headshots")
    assert standin.texts(ALICE).count("Your model is ready") == 1

    # 3. Buttons posted before another restart still work after it: ★ keeps, More renders variations.
    await discord_bot.restart()
    await standin.press(ALICE, standin.images(ALICE)[0], "★ Keep #1")
    await standin.wait_for(lambda: standin.with_text(ALICE, "Saved headshot #1"), what="the favorite after restart")
    await standin.press(ALICE, standin.images(ALICE)[1], "↻ More #2")
    await standin.wait_for(lambda: standin.with_text(ALICE, "Rendering 2 variations of #2"), what="the ack")
    await discord_bot.run_worker()
    await standin.wait_for(lambda: len(standin.images(ALICE)) == 4, what="two variations")
    assert [sent.content.split(" · ")[0] for sent in standin.images(ALICE)[2:]] == ["#3", "#4"]
    assert standin.with_text(ALICE, "Here are your variations of #2") is not None


async def test_two_users_never_see_each_others_images(
    discord_bot: DiscordBot, standin: DiscordStandin, selfie_dir: Path, tmp_path: Path
) -> None:
    alice_photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())[:3]]
    bob_photos = [path.read_bytes() for path in make_sample_selfies(tmp_path / "bob", count=3, seed=7)]

    # 1. Both train at once; one worker trains both.
    for user, photos in ((ALICE, alice_photos), (BOB, bob_photos)):
        await standin.command(user, "train", files=[_jpeg(f"{user.name}{n}.jpg", d) for n, d in enumerate(photos)])
    for user in (ALICE, BOB):
        status = await standin.wait_for(partial(standin.with_text, user, "selfies accepted ("), what="selfies")
        await standin.press(user, status, "Start training")
    for user in (ALICE, BOB):
        await standin.wait_for(partial(standin.with_text, user, "Training queued"), what="training ack")
    await discord_bot.run_worker()
    for user in (ALICE, BOB):
        await discord_bot.wait_state(user, SessionState.READY)

    # 2. Both render; each DM gets its own two headshots and nothing else.
    await standin.command(ALICE, "headshot", {"style": "linkedin"})
    await standin.command(BOB, "headshot", {"style": "casual"})
    for user in (ALICE, BOB):
        await standin.wait_for(partial(standin.with_text, user, "Rendering 2"), what="render ack")
    await discord_bot.run_worker()
    for user in (ALICE, BOB):
        await standin.wait_for(lambda user=user: len(standin.images(user)) == 2, what=f"{user.name}'s headshots")
    storage = discord_bot.settings.resolved_storage_dir
    for user, other in ((ALICE, BOB), (BOB, ALICE)):
        mine = {path.read_bytes() for path in storage.rglob("*.png") if f"discord%3A{user.id}" in str(path)}
        received = {sent.files[0][1] for sent in standin.images(user)}
        assert len(received) == 2 and received <= mine, f"{user.name} got images that are not theirs"
        assert not received & {sent.files[0][1] for sent in standin.images(other)}

    # 3. Bob's ⭐ on Alice's headshot (a message id he could only guess) marks nothing, his or hers, silently.
    await standin.react(BOB, standin.images(ALICE)[0].id)
    await standin.command(BOB, "favorites")  # handled after the reaction (his events go in order)
    await standin.wait_for(partial(standin.with_text, BOB, "No favorites yet"), what="Bob's empty favorites")
    assert "Saved headshot" not in standin.texts(BOB)
    await standin.command(ALICE, "favorites")
    await standin.wait_for(partial(standin.with_text, ALICE, "No favorites yet"), what="Alice's empty favorites")
