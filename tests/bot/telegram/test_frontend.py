"""How ``headshot-bot`` finds and configures the Telegram frontend; bad settings fail fast, naming the value."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis

from bot.main import FRONTENDS
from bot.telegram import TelegramFrontend, TelegramOptions
from jobs.settings import Settings
from tests.bot.telegram.conftest import TelegramBot
from tests.bot.telegram.standin import BotApiStandin
from tests.bot.telegram.steps import running_bot


def test_telegram_is_registered_under_its_token_setting() -> None:
    spec = next(spec for spec in FRONTENDS if spec.name == "telegram")
    assert spec.token_setting == "telegram_token"


def test_frontend_without_a_token_says_which_setting_is_missing(settings: Settings) -> None:
    with pytest.raises(ValueError, match="TELEGRAM_TOKEN is not set"):
        TelegramFrontend(settings, TelegramOptions(_env_file=None))  # type: ignore[call-arg]


def test_webhook_url_must_be_https_and_the_error_names_it() -> None:
    with pytest.raises(ValidationError, match=r"https:// URL .* got 'http://bot.example.com/hook'"):
        TelegramOptions(_env_file=None, webhook_url="http://bot.example.com/hook")  # type: ignore[call-arg]


def test_webhook_mode_without_its_server_package_says_what_to_install(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tornado", None)  # what an import finds when the package is not installed
    options = TelegramOptions(_env_file=None, webhook_url="https://bot.example.com/hook")  # type: ignore[call-arg]
    with_token = settings.model_copy(update={"telegram_token": SecretStr("1:x")})
    with pytest.raises(RuntimeError, match=r"python-telegram-bot\[webhooks\]"):
        TelegramFrontend(with_token, options)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("two words!", r"has 2 character\(s\) Telegram refuses .* only A-Z, a-z, 0-9, _ and -"),
        ("x" * 300, "is 300 characters long, Telegram takes at most 256"),
    ],
)
def test_a_secret_telegram_would_refuse_fails_at_start_naming_the_problem_not_the_secret(
    secret: str, problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem) as refused:
        TelegramOptions(_env_file=None, webhook_url="https://bot.example.com/hook", webhook_secret=secret)  # type: ignore[call-arg]
    assert "HEADSHOT_TELEGRAM_WEBHOOK_SECRET" in str(refused.value)
    assert secret not in str(refused.value)


async def test_a_refused_token_fails_fast_naming_the_setting_not_the_token(
    settings: Settings, telegram_options: TelegramOptions, redis: Redis
) -> None:
    wrong = "999:WRONG-token"
    bot = TelegramBot(settings.model_copy(update={"telegram_token": SecretStr(wrong)}), telegram_options, model=None)
    with pytest.raises(RuntimeError, match="Telegram refused TELEGRAM_TOKEN") as raised:
        await bot.start()
    await bot.app.__aexit__(None, None, None)
    assert wrong not in "".join(traceback.format_exception(raised.value))


async def test_the_command_menu_is_set_for_private_chats_only_and_a_429_only_delays_it(
    settings: Settings, telegram_options: TelegramOptions, tiny_model: Any, standin: BotApiStandin, redis: Redis
) -> None:
    standin.fail_next("setMyCommands", retry_after=1)  # Telegram's flood control at start: waited out, not fatal
    async with running_bot(settings, telegram_options, tiny_model):
        assert [call.status for call in standin.called("setMyCommands")] == [429, 200]
        assert standin.commands_scope == {"type": "all_private_chats"}  # groups get one refusal, not a menu
        assert [command["command"] for command in standin.commands][:2] == ["train", "headshot"]
