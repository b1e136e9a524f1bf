"""Logs never hold the bot tokens or a selfie's bytes: a whole flow at DEBUG, every record of every logger grepped."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.core.types import Attachment, ChatRef, IncomingMessage, OutgoingImage
from jobs.settings import Settings
from tests.bot.flows import full_flow, say_as
from tests.harness import Harness

DISCORD_TOKEN = "MTE5ODc2NTQzMjEwOTg3NjU0Mw.FAKEdc.discord-token-never-logged"
TELEGRAM_TOKEN = "7012345678:AAFAKE-telegram-token-never-logged"


@pytest.fixture
async def harness(settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis) -> AsyncIterator[Harness]:
    secret = settings.model_copy(
        update={"discord_token": SecretStr(DISCORD_TOKEN), "telegram_token": SecretStr(TELEGRAM_TOKEN)}
    )
    async with Harness(secret, tiny_model, tmp_path / "out") as running:
        yield running


def _byte_needles(data: bytes) -> list[str]:
    """How bytes could show up in a log line: repr, hex, base64 (whole and a slice), latin-1 text."""
    middle = data[len(data) // 2 : len(data) // 2 + 24]
    encoded = base64.b64encode(data).decode()
    return [
        repr(middle)[2:-1],
        middle.hex(),
        encoded[:64],
        encoded[len(encoded) // 2 : len(encoded) // 2 + 48],
        middle.decode("latin-1"),
    ]


async def test_tokens_and_image_bytes_never_reach_the_logs(
    harness: Harness, selfie_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records too
    harness.start_delivery()

    # 1. A whole flow, a refused file, /favorites (bytes go out), /delete; and the objects people are tempted to log.
    await full_flow(harness, {"alice": selfie_dir})
    broken = tmp_path / "broken.jpg"
    photo = sorted(selfie_dir.iterdir())[0].read_bytes()
    broken.write_bytes(photo[: len(photo) // 2])
    await harness.say("/train new")
    await harness.say(str(broken))
    await harness.say("/favorites")
    chat = ChatRef("local", "alice", "alice")
    log = logging.getLogger("tests.privacy")
    log.info("settings: %s / %r", harness.settings, harness.settings)
    log.info("message: %r", IncomingMessage(chat, "/train", (Attachment("me.jpg", photo),)))
    log.info("image: %r", OutgoingImage("me.png", photo))
    await harness.say("/delete")
    await say_as(harness, harness.chat, "/delete confirm")

    # 2. The needles: both tokens, and slices of every photo sent, stored and posted.
    storage = harness.settings.resolved_storage_dir
    images = [path.read_bytes() for path in selfie_dir.iterdir()] + [p.read_bytes() for p in harness.port.headshots]
    images += [path.read_bytes() for path in storage.rglob("*") if path.is_file()]
    needles = [DISCORD_TOKEN, TELEGRAM_TOKEN, DISCORD_TOKEN[:24], TELEGRAM_TOKEN.split(":")[1]]
    needles += [needle for data in images for needle in _byte_needles(data)]

    # 3. Every record, formatted with its arguments and traceback.
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    assert len(caplog.records) > 50 and any(r.levelno == logging.DEBUG for r in caplog.records)
    for record in caplog.records:
        text = formatter.format(record) + repr(record.args) + repr(record.msg)
        leaks = [needle[:16] for needle in needles if needle in text]
        assert not leaks, f"{record.name} logged {leaks}: {text[:300]}"
    assert "**********" in caplog.text  # the settings were logged, with the tokens masked
    # The worker said where each request's time went, stage by stage, and how much of it Python's garbage collector
    # took (and leaked nothing doing it, above).
    assert re.search(r"rendered \d+ headshots in [\d.]+ s: fetch [\d.]+ s, GPU [\d.]+ s, safety", caplog.text)
    assert re.search(r"event [\d.]+ s; garbage collections [\d.]+ s", caplog.text)
