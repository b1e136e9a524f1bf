"""TelegramPort against the stand-in with the real PTB Bot: throttled edits, 429s, albums of at most ten."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from telegram import Bot
from telegram.error import NetworkError, TimedOut
from telegram.request import HTTPXRequest

from bot.core.types import Button, ChatUnreachable, OutgoingImage, Reply, Undeliverable
from bot.telegram.keyboards import CallbackCommands
from bot.telegram.port import TelegramPort
from tests.bot.telegram.conftest import ALICE, BOB, TOKEN, TelegramBot
from tests.bot.telegram.standin import BotApiStandin


@pytest.fixture
async def port(standin: BotApiStandin) -> AsyncIterator[TelegramPort]:
    async with Bot(TOKEN, base_url=standin.base_url, base_file_url=standin.base_file_url) as bot:
        telegram_port = TelegramPort(bot, edit_interval_s=0.5, max_retries=2)
        telegram_port.ready.set()
        yield telegram_port
        await telegram_port.aclose()


async def test_edits_are_throttled_and_the_latest_text_always_lands(port: TelegramPort, standin: BotApiStandin) -> None:
    chat = str(ALICE.id)
    message_id = await port.send(chat, Reply("Training your model: 0%"))
    for percent in range(10, 101, 10):
        await port.edit(chat, message_id, Reply(f"Training your model: {percent}%"))
        await asyncio.sleep(0.05)
    await port.aclose()  # what the frontend does on shutdown: flush the edit still waiting

    sent = standin.messages(ALICE.id)[0]
    assert sent.text == "Training your model: 100%"
    edits = standin.called("editMessageText")
    assert 2 <= len(edits) <= 3, [call.params["text"] for call in edits]  # ten updates in ~0.5 s: two or three edits
    assert all(later.at - earlier.at >= 0.45 for earlier, later in zip(edits, edits[1:], strict=False))


async def test_a_final_edit_is_not_kept_for_later_and_its_failure_reaches_the_caller(
    port: TelegramPort, standin: BotApiStandin
) -> None:
    chat = str(ALICE.id)
    message_id = await port.send(chat, Reply("Training your model: 0%"))
    await port.edit(chat, message_id, Reply("Training your model: 10%"))  # lands, and opens the 0.5 s window
    await port.edit(chat, message_id, Reply("Training your model: 20%"))  # kept for the end of the window
    started = time.monotonic()
    await port.edit(chat, message_id, Reply("Training finished: 100%."), final=True)
    assert time.monotonic() - started < 0.4
    await asyncio.sleep(0.6)  # past the window: the kept 20% never overwrites the final text
    assert standin.messages(ALICE.id)[0].text == "Training finished: 100%."
    assert [call.params["text"] for call in standin.called("editMessageText")][-1] == "Training finished: 100%."

    await standin.delete(ALICE, int(message_id))
    with pytest.raises(Undeliverable) as gone:  # the message is gone, not the chat: the caller may post anew
        await port.edit(chat, message_id, Reply("Training failed."), final=True)
    assert not isinstance(gone.value, ChatUnreachable)


async def test_refusals_for_good_are_undeliverable_and_the_rest_pass_through(
    port: TelegramPort, standin: BotApiStandin
) -> None:
    chat = str(ALICE.id)
    message_id = await port.send(chat, Reply("Training your model: 0%"))
    await standin.block(ALICE)
    with pytest.raises(ChatUnreachable, match="blocked by the user"):
        await port.send(chat, Reply("Your model is ready!"))
    with pytest.raises(ChatUnreachable):
        await port.edit(chat, message_id, Reply("Training your model: 10%"))  # the message's first edit: not held
    with pytest.raises(ChatUnreachable):
        await port.send_image(chat, OutgoingImage("h1.png", b"\x89PNG" + bytes(100)))
    standin.fail_chat(ALICE, 502, "Bad Gateway")  # Telegram's edge having a bad moment: worth another try
    with pytest.raises(NetworkError) as transient:
        await port.send(chat, Reply("Your model is ready!"))
    assert not isinstance(transient.value, Undeliverable)


async def test_rate_limited_send_waits_retry_after_and_posts_once(port: TelegramPort, standin: BotApiStandin) -> None:
    standin.fail_next("sendMessage", retry_after=1)
    started = time.monotonic()
    message_id = await port.send(str(ALICE.id), Reply("Your model is ready!"))
    assert time.monotonic() - started >= 1.0
    assert [sent.text for sent in standin.messages(ALICE.id)] == ["Your model is ready!"]
    assert message_id == str(standin.messages(ALICE.id)[0].message_id)


async def test_each_headshot_is_a_photo_with_its_own_button_and_an_oversized_one_a_document(
    port: TelegramPort, standin: BotApiStandin
) -> None:
    small = OutgoingImage("h1.png", b"\x89PNG" + bytes(100), caption="#1")
    # Over sendPhoto's 10 MB as PTB and the stand-in read it (10^7 bytes), though under 10 MiB.
    big = OutgoingImage("h2.png", b"\x89PNG" + bytes(10_200_000), caption="#2")
    ids = [
        await port.send_image(str(ALICE.id), image, (Button(f"★ Keep {image.caption}", "/favorite"),))
        for image in (small, big)
    ]
    posted = {str(sent.message_id): sent for sent in standin.messages(ALICE.id)}
    assert [posted[message_id].kind for message_id in ids] == ["photo", "document"]
    assert [posted[message_id].data for message_id in ids] == [small.data, big.data]
    assert [posted[message_id].buttons for message_id in ids] == [
        {"★ Keep #1": "/favorite"},
        {"★ Keep #2": "/favorite"},
    ]
    assert not standin.called("sendMediaGroup")


async def test_an_upload_slower_than_the_default_read_timeout_but_within_the_media_timeout_posts_once(
    standin: BotApiStandin,
) -> None:
    # Scaled down: a default read timeout of 1 s (PTB's is 5 s), Telegram taking 1.5 s, uploads given 3 s.
    standin.slow("sendPhoto", 1.5)
    photo = OutgoingImage("h1.png", b"\x89PNG" + bytes(100), caption="#1")
    request = HTTPXRequest(read_timeout=1.0)
    async with Bot(TOKEN, base_url=standin.base_url, base_file_url=standin.base_file_url, request=request) as bot:
        # 1. At the default timeout the call fails, yet Telegram posted the photo: a retry would post it twice.
        with pytest.raises(TimedOut):
            await bot.send_photo(BOB.id, photo.data)
        await standin.wait_for(lambda: standin.messages(BOB.id), what="the photo posted all the same")

        # 2. The port waits for uploads as long as media_timeout_s: the one photo, and its message id.
        port = TelegramPort(bot, media_timeout_s=3.0)
        port.ready.set()
        message_id = await port.send_image(str(ALICE.id), photo)
    assert [str(sent.message_id) for sent in standin.messages(ALICE.id)] == [message_id]
    assert [call.status for call in standin.called("sendPhoto")] == [200, 200]


def test_a_command_too_long_for_callback_data_travels_as_a_short_id() -> None:
    callbacks = CallbackCommands()
    command = "/headshot " + "a-very-long-free-text-style-" * 4
    markup = callbacks.markup([Button("Go", command)])
    assert markup is not None
    data = markup.inline_keyboard[0][0].callback_data
    assert isinstance(data, str) and len(data.encode()) <= 64
    assert callbacks.decode(data) == command
    assert CallbackCommands().decode(data) is None  # another process (after a restart) says the button expired


async def test_the_token_never_reaches_the_log(
    telegram_bot: TelegramBot, standin: BotApiStandin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # PTB logs its API URL, token included, at DEBUG
    await standin.send_text(ALICE, "/styles")
    await standin.wait_for(lambda: "linkedin" in standin.texts(ALICE.id), what="the styles")
    await telegram_bot.restart()
    assert "**********" in caplog.text  # PTB did log its URL, masked
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text
