"""DiscordPort against the stand-in with a real, logged-in discord.py client: edits, 429s, files and limits."""

from __future__ import annotations

import asyncio
import io
import random
import time
from collections.abc import AsyncIterator

import discord
import pytest
from PIL import Image

from bot.core.types import Button, ChatUnreachable, OutgoingImage, Reply, Undeliverable
from bot.discord.port import DiscordPort
from tests.bot.discord.conftest import ALICE, BOB, TOKEN
from tests.bot.discord.standin import DiscordStandin


@pytest.fixture
async def port(standin: DiscordStandin) -> AsyncIterator[DiscordPort]:
    discord.http.Route.BASE = standin.api_base
    client = discord.Client(intents=discord.Intents.none())
    await client.login(TOKEN)
    discord_port = DiscordPort(client, edit_interval_s=0.5, upload_limit_bytes=200_000)
    discord_port.ready.set()
    yield discord_port
    await discord_port.aclose()
    await client.close()


def _noise_png(side: int) -> bytes:
    """A PNG that compresses badly, so it is big; as JPEG it is far smaller."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), random.Random(0).randbytes(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_edits_are_throttled_and_the_latest_text_always_lands(port: DiscordPort, standin: DiscordStandin) -> None:
    chat = str(ALICE.dm)
    message_id = await port.send(chat, Reply("Training your model: 0%", (Button("Cancel", "/cancel"),)))
    for percent in range(10, 101, 10):
        await port.edit(chat, message_id, Reply(f"Training your model: {percent}%"))
        await asyncio.sleep(0.05)
    await port.aclose()  # what the frontend does on shutdown: flush the edit still waiting

    sent = standin.messages(ALICE)[0]
    assert sent.content == "Training your model: 100%" and sent.buttons == {}
    edits = standin.called("PATCH", f"/messages/{message_id}")
    assert 2 <= len(edits) <= 3, [call.body["content"] for call in edits]
    assert all(later.at - earlier.at >= 0.45 for earlier, later in zip(edits, edits[1:], strict=False))


async def test_rate_limited_send_waits_retry_after_and_posts_once(port: DiscordPort, standin: DiscordStandin) -> None:
    standin.fail_next("POST", "/messages", retry_after=1.0)
    started = time.monotonic()
    message_id = await port.send(str(ALICE.dm), Reply("Your model is ready!"))
    assert time.monotonic() - started >= 1.0
    assert [sent.content for sent in standin.messages(ALICE)] == ["Your model is ready!"]
    assert message_id == str(standin.messages(ALICE)[0].id)


async def test_images_one_per_message_and_an_oversized_png_is_reencoded(
    port: DiscordPort, standin: DiscordStandin
) -> None:
    big = _noise_png(400)
    assert len(big) > port.upload_limit_bytes
    images = [OutgoingImage("h1.png", b"\x89PNG" + b"1" * 100, "#1"), OutgoingImage("h2.png", big, "#2")]
    ids = [await port.send_image(str(ALICE.dm), image, (Button("★ Keep", "/favorite 1"),)) for image in images]
    posted = {str(sent.id): sent for sent in standin.messages(ALICE)}
    assert [len(posted[message_id].files) for message_id in ids] == [1, 1]
    assert posted[ids[0]].files[0] == ("h1.png", images[0].data)
    assert posted[ids[0]].buttons == {"★ Keep": "hs:/favorite 1"}
    name, data = posted[ids[1]].files[0]
    assert name == "h2.jpg" and data.startswith(b"\xff\xd8") and len(data) <= port.upload_limit_bytes
    assert "re-encoded as JPEG" in posted[ids[1]].content


async def test_a_blocked_user_is_unreachable_and_an_image_that_cannot_fit_is_undeliverable(
    port: DiscordPort, standin: DiscordStandin
) -> None:
    chat = str(ALICE.dm)
    message_id = await port.send(chat, Reply("Training your model: 0%"))
    standin.block(ALICE)
    with pytest.raises(ChatUnreachable, match="50007"):
        await port.send(chat, Reply("Your model is ready!"))
    with pytest.raises(ChatUnreachable):
        await port.edit(chat, message_id, Reply("Training your model: 10%"))  # the message's first edit: not held

    port.upload_limit_bytes = 500  # below any JPEG of the picture: fit_upload gives up
    with pytest.raises(Undeliverable, match="no JPEG") as refused:
        await port.send_image(str(BOB.dm), OutgoingImage("h1.png", _noise_png(200), "#1"))
    assert not isinstance(refused.value, ChatUnreachable)


async def test_twelve_originals_go_as_messages_of_ten_and_two(port: DiscordPort, standin: DiscordStandin) -> None:
    files = [OutgoingImage(f"h{n}.png", b"\x89PNG" + bytes([n]) * 100) for n in range(12)]
    await port.send_files(str(ALICE.dm), files)
    assert [len(sent.files) for sent in standin.messages(ALICE)] == [10, 2]
    assert [data for sent in standin.messages(ALICE) for _, data in sent.files] == [item.data for item in files]


async def test_a_long_command_travels_as_a_short_custom_id(port: DiscordPort, standin: DiscordStandin) -> None:
    command = "/headshot " + "x" * 120
    await port.send(str(ALICE.dm), Reply("Pick", (Button("Long", command),)))
    custom_id = standin.messages(ALICE)[0].buttons["Long"]
    assert len(custom_id) <= 100 and port.buttons.decode(custom_id.removeprefix("hs:")) == command


async def test_originals_over_25_mib_in_all_go_in_messages_under_it(port: DiscordPort, standin: DiscordStandin) -> None:
    port.upload_limit_bytes = 10 * 2**20  # Discord's per-file limit: each original goes as it is
    files = [OutgoingImage(f"h{n}.png", b"\x89PNG" + random.Random(n).randbytes(9 * 2**20)) for n in range(4)]
    await port.send_files(str(ALICE.dm), files)  # 36 MiB: one request would be refused with 413
    assert [len(sent.files) for sent in standin.messages(ALICE)] == [2, 2]
    assert [data for sent in standin.messages(ALICE) for _, data in sent.files] == [item.data for item in files]
    assert all(call.status == 200 for call in standin.called("POST", "/messages"))


async def test_editing_a_deleted_message_is_undeliverable_at_once(port: DiscordPort, standin: DiscordStandin) -> None:
    started = time.monotonic()
    with pytest.raises(Undeliverable, match="10008") as refused:
        await port.edit(str(ALICE.dm), "1234567", Reply("Training finished: 100%."), final=True)
    assert not isinstance(refused.value, ChatUnreachable)
    assert time.monotonic() - started < 2  # a 404, not a 5xx that discord.py retries
