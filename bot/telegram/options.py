"""Telegram-only knobs, read like ``Settings`` (``HEADSHOT_TELEGRAM_<FIELD>`` or ``.env``); the token stays there.

Kept beside the adapter rather than in ``jobs/settings.py``: the worker never needs them.
"""

from __future__ import annotations

import string

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["TelegramOptions"]

# What setWebhook's secret_token may hold (https://core.telegram.org/bots/api#setwebhook).
_SECRET_ALPHABET = frozenset(string.ascii_letters + string.digits + "_-")
_SECRET_MAX_LENGTH = 256


class TelegramOptions(BaseSettings):
    """Polling unless ``webhook_url`` is set. Tests point ``base_url``/``base_file_url`` at a local stand-in."""

    # hide_input_in_errors: a validation error would otherwise quote the webhook secret it refuses.
    model_config = SettingsConfigDict(
        env_prefix="HEADSHOT_TELEGRAM_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    base_url: str = Field(default="https://api.telegram.org/bot", description="Bot API root; the token is appended.")
    base_file_url: str = Field(default="https://api.telegram.org/file/bot", description="File download root.")
    edit_interval_s: float = Field(default=3.0, ge=0, description="Least time between two edits of one message.")
    album_wait_s: float = Field(
        default=2.0,
        gt=0,
        description="How long to wait for the rest of an album after its last photo arrived (slow uploads leave "
        "gaps over a second between parts).",
    )
    poll_timeout_s: int = Field(default=30, ge=0, description="Long-polling timeout of getUpdates.")
    max_retries: int = Field(default=3, ge=0, description="Retries of one Bot API call after a 429 (RetryAfter).")
    max_queued_updates: int = Field(
        default=30,
        ge=1,
        description="Updates of one user that may wait for their earlier ones; more are dropped as a flood.",
    )

    # Webhook mode (production): Telegram POSTs updates to webhook_url; the bot listens on listen:port/url_path.
    webhook_url: str | None = Field(default=None, description="Public HTTPS URL Telegram posts to; unset = polling.")
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_path: str = Field(default="telegram", description="Path the local webhook server serves.")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Checked on every webhook request (X-Telegram-Bot-Api-Secret-Token); unset = a new one each start.",
    )

    @field_validator("webhook_secret")
    @classmethod
    def _secret_telegram_takes(cls, secret: SecretStr | None) -> SecretStr | None:
        # The secret itself is never quoted: errors reach logs and terminals.
        if secret is None or not secret.get_secret_value():
            return None  # a blank line in .env: a fresh secret each start, as when unset
        value = secret.get_secret_value()
        fix = (
            "set HEADSHOT_TELEGRAM_WEBHOOK_SECRET to e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or unset it for a new one each start"
        )
        if len(value) > _SECRET_MAX_LENGTH:
            raise ValueError(
                f"webhook_secret is {len(value)} characters long, Telegram takes at most {_SECRET_MAX_LENGTH}: {fix}"
            )
        refused = sum(char not in _SECRET_ALPHABET for char in value)
        if refused:
            raise ValueError(
                f"webhook_secret has {refused} character(s) Telegram refuses in a secret token "
                f"(it takes only A-Z, a-z, 0-9, _ and -): {fix}"
            )
        return secret

    @model_validator(mode="after")
    def _webhook_is_https(self) -> TelegramOptions:
        if self.webhook_url is not None and not self.webhook_url.startswith("https://"):
            raise ValueError(
                f"webhook_url must be an https:// URL (Telegram posts only over TLS), got {self.webhook_url!r}"
            )
        return self
