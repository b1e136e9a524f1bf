"""Discord-only knobs, read like ``Settings`` (``HEADSHOT_DISCORD_<FIELD>`` or ``.env``); the token stays there.

Kept beside the adapter rather than in ``jobs/settings.py``: the worker never needs them.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DiscordOptions"]

MB = 2**20


class DiscordOptions(BaseSettings):
    """Production needs none of these set. Tests point ``api_base``/``gateway_url`` at a local stand-in."""

    model_config = SettingsConfigDict(env_prefix="HEADSHOT_DISCORD_", env_file=".env", extra="ignore")

    api_base: str | None = Field(
        default=None, description="REST root such as http://127.0.0.1:8080/api/v10; unset = discord.com."
    )
    gateway_url: str | None = Field(default=None, description="Gateway websocket URL; unset = gateway.discord.gg.")
    edit_interval_s: float = Field(default=3.0, ge=0, description="Least time between two edits of one message.")
    max_download_bytes: int = Field(
        default=25 * MB, gt=0, description="Attachments above this are refused before they are downloaded."
    )
    upload_limit_bytes: int = Field(
        default=10 * MB, gt=0, description="Largest file the bot posts (Discord's limit without server boosts)."
    )
    sync_commands: bool = Field(
        default=True, description="Publish the slash commands globally at start, when they changed since the last sync."
    )
