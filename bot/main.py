"""``headshot-bot``: the production bot process. Runs every chat frontend whose token is set, plus delivery.

Frontends plug in through ``FRONTENDS``: a name, the setting that holds its token, and a factory (Discord and
Telegram). The local terminal chat needs no token (``headshot-local``).

Each frontend runs on its own: one that fails (a refused token, a gateway that closed, a crash) is logged and built
afresh from its factory after a pause that doubles with each failure, while the others serve on. Shutdown cuts off
nothing in flight: receiving stops first, then delivery and the watchdog finish, then the chat clients close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.app import BotApp
from bot.core.types import Button, ChatPort, OutgoingImage, Reply
from jobs.logging_setup import configure_logging
from jobs.ops.redis_server import embedded_redis
from jobs.settings import Settings

__all__ = ["FRONTENDS", "Frontend", "FrontendSpec", "main", "serve"]

log = logging.getLogger(__name__)

RESTART_FIRST_S = 1.0
RESTART_MOST_S = 300.0
HEALTHY_S = 60.0  # a frontend that served this long before failing starts its pauses from the first again


class Frontend(Protocol):
    """A chat platform adapter: its ``port`` posts replies; ``run`` receives updates until ``stop`` is set, then
    closes its clients."""

    @property
    def port(self) -> ChatPort: ...

    async def run(self, app: BotApp, stop: asyncio.Event) -> None: ...


@runtime_checkable
class StopsReceiving(Protocol):
    """A frontend that can stop receiving before it closes (Discord: its gateway), its port still posting."""

    async def stop_receiving(self) -> None: ...


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


class _Supervised:
    """One platform's frontend, run until the bot stops and built afresh after each failure (a used client cannot
    log in again); ``port`` stays the same object for delivery and posts through whichever frontend is current."""

    def __init__(self, spec: FrontendSpec, settings: Settings, first_pause_s: float) -> None:
        self.spec = spec
        self.settings = settings
        self.first_pause_s = first_pause_s
        self.frontend = spec.factory(settings)  # the first one at once: a configuration error stops the start
        self.port = _RelayPort(self)

    async def run(self, app: BotApp, stop: asyncio.Event, close: asyncio.Event) -> None:
        pause = self.first_pause_s
        while True:
            started = time.monotonic()
            try:
                await self.frontend.run(app, close)
            except Exception:
                log.exception("the %s frontend failed", self.spec.name)
            else:
                if not stop.is_set():
                    log.error("the %s frontend stopped on its own", self.spec.name)
            if stop.is_set():
                return
            if time.monotonic() - started >= HEALTHY_S:
                pause = self.first_pause_s
            # Pause, then build it afresh; a build that fails pauses again.
            while True:
                log.warning("restarting the %s frontend in %.0f s; the others serve on", self.spec.name, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                if stop.is_set():
                    return
                pause = min(pause * 2, RESTART_MOST_S)
                try:
                    self.frontend = self.spec.factory(self.settings)
                    break
                except Exception:
                    log.exception("building the %s frontend again failed", self.spec.name)

    async def stop_receiving(self) -> None:
        frontend = self.frontend
        if isinstance(frontend, StopsReceiving):
            try:
                await frontend.stop_receiving()
            except Exception:
                log.exception("stopping the %s frontend's updates failed", self.spec.name)


class _RelayPort:
    """The ``ChatPort`` delivery holds for one platform, across that frontend's restarts."""

    def __init__(self, supervised: _Supervised) -> None:
        self._supervised = supervised
        self.platform = supervised.frontend.port.platform

    @property
    def _port(self) -> ChatPort:
        return self._supervised.frontend.port

    @property
    def upload_limit_bytes(self) -> int:
        return self._port.upload_limit_bytes

    async def send(self, chat_id: str, reply: Reply) -> str:
        return await self._port.send(chat_id, reply)

    async def edit(self, chat_id: str, message_id: str, reply: Reply, *, final: bool = False) -> None:
        await self._port.edit(chat_id, message_id, reply, final=final)

    async def send_image(self, chat_id: str, image: OutgoingImage, buttons: Sequence[Button] = ()) -> str:
        return await self._port.send_image(chat_id, image, buttons)

    async def send_files(self, chat_id: str, files: Sequence[OutgoingImage]) -> None:
        await self._port.send_files(chat_id, files)


async def serve(
    settings: Settings,
    redis_url: str,
    specs: Sequence[FrontendSpec],
    stop: asyncio.Event,
    *,
    first_pause_s: float = RESTART_FIRST_S,
) -> None:
    """Run the frontends and delivery until ``stop`` is set; a failing frontend is restarted on its own."""
    supervised = [_Supervised(spec, settings, first_pause_s) for spec in specs]
    close = asyncio.Event()
    async with BotApp(settings, redis_url) as app:
        app.start_delivery({each.port.platform: each.port for each in supervised})
        runs = [
            asyncio.create_task(each.run(app, stop, close), name=f"frontend-{each.spec.name}") for each in supervised
        ]
        try:
            await stop.wait()
            # 1. Receive nothing new. A frontend that cannot stop receiving alone (Telegram) serves on until step 3;
            #    what it has not fetched by then waits on Telegram's side for the next start.
            for each in supervised:
                await each.stop_receiving()
            # 2. Deliveries and the watchdog round in flight finish, through clients that are still open.
            await app.stop_delivery()
        finally:
            # 3. Close the chat clients (edits still held back are flushed first).
            close.set()
            await asyncio.gather(*runs)


async def _serve_until_signalled(settings: Settings, redis_url: str, specs: Sequence[FrontendSpec]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(settings, redis_url, specs, stop)


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
    log.info("starting frontends: %s", ", ".join(spec.name for spec in configured))
    with embedded_redis(settings.redis_url, settings.data_dir / "redis") as redis_url:
        asyncio.run(_serve_until_signalled(settings, redis_url, configured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
