"""``headshot-bot``: the production bot process. Runs every chat frontend whose token is set, plus delivery.

Frontends plug in through ``FRONTENDS``: a name, the setting that holds its token, and a factory (Discord and
Telegram). The local terminal chat needs no token (``headshot-local``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.app import BotApp
from bot.core.types import ChatPort
from jobs.logging_setup import configure_logging
from jobs.ops.redis_server import embedded_redis
from jobs.settings import Settings

__all__ = ["FRONTENDS", "Frontend", "FrontendSpec", "main"]

log = logging.getLogger(__name__)


class Frontend(Protocol):
    """A chat platform adapter: its ``port`` posts replies; ``run`` receives updates until ``stop`` is set."""

    @property
    def port(self) -> ChatPort: ...

    async def run(self, app: BotApp, stop: asyncio.Event) -> None: ...


@dataclass(frozen=True)
class FrontendSpec:
    name: str
    token_setting: str
    factory: Callable[[Settings], Frontend]


def _discord(settings: Settings) -> Frontend:
    from bot.discord import DiscordFrontend  # imported only when its token is set

    return DiscordFrontend(settings)


def _telegram(settings: Settings) -> Frontend:
    from bot.telegram import TelegramFrontend  # imported only when its token is set

    return TelegramFrontend(settings)


FRONTENDS: list[FrontendSpec] = [
    FrontendSpec("discord", "discord_token", _discord),
    FrontendSpec("telegram", "telegram_token", _telegram),
]


async def serve(settings: Settings, redis_url: str, frontends: list[Frontend]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with BotApp(settings, redis_url) as app:
        app.start_delivery({frontend.port.platform: frontend.port for frontend in frontends})
        await asyncio.gather(*(frontend.run(app, stop) for frontend in frontends))


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    configure_logging(settings)  # HEADSHOT_LOG_FORMAT=json for one JSON object per line
    configured = [spec for spec in FRONTENDS if getattr(settings, spec.token_setting) is not None]
    if not configured:
        print(
            "No chat token set: put DISCORD_TOKEN and/or TELEGRAM_TOKEN in the environment or .env, "
            "or run `headshot-local` to chat in this terminal.",
            file=sys.stderr,
        )
        return 2
    frontends = [spec.factory(settings) for spec in configured]
    log.info("starting frontends: %s", ", ".join(spec.name for spec in configured))
    with embedded_redis(settings.redis_url, settings.data_dir / "redis") as redis_url:
        asyncio.run(serve(settings, redis_url, frontends))
    return 0


if __name__ == "__main__":
    sys.exit(main())
