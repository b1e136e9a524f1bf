"""Selfies into Telegram: albums, files, refusals a user can act on, and groups refused without storing anything."""

from __future__ import annotations

from pathlib import Path

from bot.core.session import SessionState
from jobs.contract.keys import lora_key
from tests.bot.telegram.conftest import ALICE, TelegramBot
from tests.bot.telegram.standin import BotApiStandin, Sent


def _status(standin: BotApiStandin, chat_id: int) -> Sent | None:
    found = [sent for sent in standin.messages(chat_id) if "selfies accepted" in sent.text]
    return found[-1] if found else None


async def test_album_with_train_caption_gets_one_edited_status_and_a_start_button(
    telegram_bot: TelegramBot, standin: BotApiStandin, selfie_dir: Path
) -> None:
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())]

    # An album of two, captioned /train: one update per photo, the caption on the first only.
    await standin.send_album(ALICE, photos[:2], caption="/train")
    status = await standin.wait_for(lambda: _status(standin, ALICE.id), what="the selfie status")
    assert "✓ photo 1: accepted" in status.text and "✓ photo 2: accepted" in status.text
    assert "2 of 3 selfies accepted" in status.text and "Start training" not in status.buttons

    # Two more, sent as files: the same status message is edited, now with the button.
    await standin.send_album(ALICE, photos[2:], as_files=True)
    await standin.wait_for(lambda: "4 selfies accepted" in status.text, what="the edited status")
    assert "✓ IMG_0001.jpg: accepted" in status.text and "✓ photo 2: accepted" in status.text
    assert status.buttons["Start training"] == "/train start"
    assert sum("selfies accepted" in sent.text for sent in standin.messages(ALICE.id)) == 1
    # Compressed photos earn the send-as-file tip, once.
    assert standin.texts(ALICE.id).count("as files") == 1
    assert await telegram_bot.app.store.current_session(f"telegram:{ALICE.id}") is not None


async def test_pdf_big_file_and_corrupt_jpeg_are_each_answered_clearly(
    telegram_bot: TelegramBot, standin: BotApiStandin, selfie_dir: Path
) -> None:
    good = sorted(selfie_dir.iterdir())[0].read_bytes()
    await standin.send_text(ALICE, "/train")
    await standin.wait_for(lambda: "Send 3 to 5 selfies" in standin.texts(ALICE.id), what="the /train intro")

    # Neither a PDF nor a file over getFile's 20 MB is asked of Telegram: each is refused unread.
    await standin.send_document(ALICE, b"%PDF-1.4 a CV, not a photo\n", "resume.pdf", "application/pdf")
    await standin.wait_for(lambda: "✗ resume.pdf" in standin.texts(ALICE.id), what="the PDF verdict")
    assert "resume.pdf: that is not a photo (application/pdf)" in standin.texts(ALICE.id)

    await standin.send_document(ALICE, good, "huge.jpg", "image/jpeg", size=25_000_000)
    await standin.wait_for(lambda: "✗ huge.jpg" in standin.texts(ALICE.id), what="the 25 MB refusal")
    assert "25.0 MB" in standin.texts(ALICE.id) and "at most 20 MB" in standin.texts(ALICE.id)
    assert standin.called("getFile") == []

    await standin.send_document(ALICE, good[: len(good) // 2], "cut.jpg", "image/jpeg")
    await standin.wait_for(lambda: "✗ cut.jpg" in standin.texts(ALICE.id), what="the truncated JPEG verdict")
    assert "cut off" in standin.texts(ALICE.id)

    await standin.send_photo(ALICE, good)
    status = await standin.wait_for(lambda: _status(standin, ALICE.id), what="the count")
    await standin.wait_for(lambda: "1 of 3 selfies accepted" in status.text, what="the good photo counted")
    # Nothing bad was stored; the session is still collecting.
    assert await telegram_bot.app.store.selfie_keys(f"telegram:{ALICE.id}", 1) != []
    assert len(list(telegram_bot.settings.resolved_storage_dir.rglob("*.jpg"))) == 1
    session = await telegram_bot.app.store.current_session(f"telegram:{ALICE.id}")
    assert session is not None and session.state == SessionState.COLLECTING


async def test_group_chat_gets_one_short_refusal_with_a_deep_link_and_nothing_is_stored(
    telegram_bot: TelegramBot, standin: BotApiStandin, selfie_dir: Path
) -> None:
    group = {"id": -100555, "type": "group", "title": "Team"}
    photo = sorted(selfie_dir.iterdir())[0].read_bytes()
    await standin.send_photo(ALICE, photo, caption="/train", chat=group)
    await standin.send_text(ALICE, "/train", chat=group)
    await standin.send_text(ALICE, "/help", chat=group)
    refusal = await standin.wait_for(lambda: standin.messages(-100555), what="the group refusal")
    await standin.send_text(ALICE, "/start train")  # the deep link opens the private chat with this
    await standin.wait_for(lambda: "Send 3 to 5 selfies" in standin.texts(ALICE.id), what="the deep link's /train")

    assert len(standin.messages(-100555)) == 1
    assert "private chat" in refusal[0].text and "https://t.me/HeadshotTestBot?start=train" in refusal[0].text
    assert standin.called("getFile") == []
    assert not any(path.is_file() for path in telegram_bot.settings.resolved_storage_dir.rglob("*"))


async def test_commands_menu_and_reaction_updates_are_requested(
    telegram_bot: TelegramBot, standin: BotApiStandin
) -> None:
    await standin.wait_for(lambda: standin.allowed_updates, what="a getUpdates call")
    assert standin.allowed_updates is not None and "message_reaction" in standin.allowed_updates
    assert "callback_query" in standin.allowed_updates
    names = [command["command"] for command in standin.commands]
    assert names == [
        *("train", "headshot", "styles", "status", "favorites", "export"),
        *("more", "remix", "upscale", "cancel", "delete", "help"),
    ]
    await standin.send_text(ALICE, "/help")
    await standin.wait_for(lambda: "/headshot <style>" in standin.texts(ALICE.id), what="the help text")


async def test_an_album_split_by_a_slow_upload_keeps_its_caption_for_the_late_photos(
    telegram_bot: TelegramBot, standin: BotApiStandin, selfie_dir: Path
) -> None:
    # Alice has a trained model; "/train new" in an album's caption starts over with the album's photos.
    user = f"telegram:{ALICE.id}"
    store = telegram_bot.app.store
    await store.ensure_user(user, "telegram", str(ALICE.id))
    ready = await store.new_session(user, SessionState.READY)
    await store.update_session(user, ready.id, lora_key=lora_key(user, ready.id))
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())]

    # The album's last two photos arrive well after the collation window closed on its first two.
    await standin.send_photo(ALICE, photos[0], caption="/train new", media_group_id="slow")
    await standin.send_photo(ALICE, photos[1], media_group_id="slow")
    await standin.wait_for(lambda: _status(standin, ALICE.id), what="the first run's status")
    await standin.send_photo(ALICE, photos[2], media_group_id="slow")
    await standin.send_photo(ALICE, photos[3], media_group_id="slow")

    # The late photos join the new session, under the caption they were sent with: none is refused.
    status = await standin.wait_for(lambda: _status(standin, ALICE.id), what="the status")
    await standin.wait_for(lambda: "4 selfies accepted" in status.text, what="all four in the new session")
    assert "send /train new first" not in standin.texts(ALICE.id)
    session = await store.current_session(user)
    assert session is not None and session.id != ready.id and session.state == SessionState.COLLECTING
