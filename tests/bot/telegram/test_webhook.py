"""Webhook mode: Telegram POSTs updates to PTB's webhook server, which takes only those carrying the secret token
the bot gave setWebhook. Without it anyone who found the URL could write as any user, "/delete confirm" included."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.telegram import TelegramOptions
from jobs.settings import Settings
from tests.bot.telegram.conftest import ALICE
from tests.bot.telegram.standin import BotApiStandin
from tests.bot.telegram.steps import running_bot, with_text

pytest.importorskip("tornado", reason="webhook mode needs python-telegram-bot[webhooks]")

PUBLIC_URL = "https://bot.example.com/telegram"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def webhook_options(telegram_options: TelegramOptions, standin: BotApiStandin) -> TelegramOptions:
    """Webhook mode on a free local port; the stand-in posts there, as the TLS proxy in front of the bot would."""
    port = _free_port()
    standin.webhook_proxy = f"http://127.0.0.1:{port}/telegram"
    changes = {"webhook_url": PUBLIC_URL, "webhook_listen": "127.0.0.1", "webhook_port": port}
    return telegram_options.model_copy(update=changes)


def _stored_files(settings: Settings) -> list[Path]:
    return [path for path in settings.resolved_storage_dir.rglob("*") if path.is_file()]


async def test_updates_without_the_secret_are_refused_and_the_users_data_stays(
    settings: Settings,
    webhook_options: TelegramOptions,
    tiny_model: Any,
    standin: BotApiStandin,
    redis: Redis,
    selfie_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # PTB logs setWebhook's parameters at DEBUG
    async with running_bot(settings, webhook_options, tiny_model) as bot:
        # 1. No secret was configured: the bot made one that Telegram takes, and gave it to setWebhook.
        hook = standin.webhook
        assert hook is not None and hook.url == PUBLIC_URL and hook.allowed_updates is not None
        assert hook.secret_token is not None and re.fullmatch(r"[A-Za-z0-9_-]{43}", hook.secret_token)
        assert {"message", "callback_query", "message_reaction", "my_chat_member"} <= set(hook.allowed_updates)

        # 2. Alice sends a selfie through Telegram, which posts it with the secret: it is stored.
        await standin.send_photo(ALICE, sorted(selfie_dir.iterdir())[0].read_bytes(), caption="/train")
        await standin.wait_for(lambda: with_text(standin, ALICE, "1 of 3 selfies accepted"), what="her selfie")
        stored = _stored_files(bot.settings)
        assert stored

        # 3. Someone posts her "/delete" and "/delete confirm" without the secret, then with a guessed one: PTB
        # answers 403 before anything is queued, so nothing is erased and she is asked nothing.
        forged = [standin.text_update(ALICE, "/delete"), standin.text_update(ALICE, "/delete confirm")]
        for secret in (None, "guessed-secret"):
            assert [await standin.post_to_webhook(update, secret) for update in forged] == [403, 403]
        assert _stored_files(bot.settings) == stored
        assert with_text(standin, ALICE, "Are you sure?") is None

        # 4. The same updates with the secret are handled: that is the only difference.
        assert [await standin.post_to_webhook(update, hook.secret_token) for update in forged] == [200, 200]
        await standin.wait_for(lambda: with_text(standin, ALICE, "Done: your selfies"), what="the erasure")
        assert _stored_files(bot.settings) == []
    assert hook.secret_token not in caplog.text


async def test_a_configured_secret_is_the_one_set_and_checked(
    settings: Settings, webhook_options: TelegramOptions, tiny_model: Any, standin: BotApiStandin, redis: Redis
) -> None:
    secret = "kept-in-the-deploy-env_0123456789"
    options = TelegramOptions(**{**webhook_options.model_dump(), "webhook_secret": secret})
    async with running_bot(settings, options, tiny_model):
        assert standin.webhook is not None and standin.webhook.secret_token == secret
        await standin.send_text(ALICE, "/help")  # posted by the stand-in with the secret setWebhook got
        await standin.wait_for(lambda: with_text(standin, ALICE, "/headshot <style>"), what="the help")
        assert await standin.post_to_webhook(standin.text_update(ALICE, "/help"), secret[:-1]) == 403
