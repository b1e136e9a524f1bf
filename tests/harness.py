"""A running bot (real store, real Redis, local chat frontend) and an in-process arq worker on the tiny model."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from bot.app import BotApp
from bot.core.context import CoreContext
from bot.core.session import SessionState
from bot.local.chat import LocalChat
from bot.local.port import LocalChatPort
from jobs.settings import Settings
from jobs.worker.app import build_worker
from jobs.worker.model_setup import ServingModel
from jobs.worker.state import WorkerState, worker_state
from pipeline.safety.image import ImageSafety


async def run_burst_worker(
    settings: Settings, model: ServingModel, image_safety: ImageSafety | None = None
) -> WorkerState:
    """A real arq worker in burst mode on the shared tiny model: runs what is queued, then returns its state (its GPU
    turns say whether jobs overlapped). Its image safety check is ``image_safety``, else the one the settings ask
    for."""
    assert settings.redis_url is not None
    worker = build_worker(
        settings,
        settings.redis_url,
        model=model,
        image_safety=image_safety,
        burst=True,
        # Not 0: a burst worker polls its queue while a job runs, and at 0 its event loop spun a core at 100% and
        # held the GIL from the job's torch thread (a tiny training ran 2-3x slower beside it).
        poll_delay=0.05,
        handle_signals=False,
    )
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return worker_state(worker.ctx)


@contextlib.asynccontextmanager
async def serving_worker(settings: Settings, model: ServingModel, *, offers: str | None = None) -> AsyncIterator[None]:
    """A real arq worker running for the block, as in production (its heartbeat tells the bot what it offers); with
    ``offers``, the block starts once the worker's heartbeat offers that ``WorkerFeature``."""
    from redis.asyncio import Redis

    from jobs.ops.health import WorkerFeature, offered

    assert settings.redis_url is not None
    worker = build_worker(settings, settings.redis_url, model=model, poll_delay=0.05, handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    redis = Redis.from_url(settings.redis_url)
    try:
        deadline = time.monotonic() + 60
        while offers is not None and not await offered(redis, settings.queue_name, WorkerFeature(offers)):
            assert time.monotonic() < deadline and not running.done(), f"the worker never offered {offers}"
            await asyncio.sleep(0.05)
        yield
    finally:
        await stop_worker(worker, running)
        await redis.aclose()


async def stop_worker(worker: Any, running: asyncio.Task[Any]) -> None:
    """Stop a worker that ``running`` runs (``async_run``) and close it, whatever its jobs are doing.

    arq's ``close`` cancels the jobs still running and gathers them without ``return_exceptions``, so a job its last
    poll had just begun surfaced there as a ``CancelledError`` (seen once in CI, in the queue tests, with a worker of
    their own). Here no job starts after the first line; the loop stops; the jobs left are cancelled and awaited
    here; ``close`` then only closes (``on_shutdown``: the worker state's processes and ports)."""
    worker.allow_pick_jobs = False  # arq's own switch: its polls start nothing from here on
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    jobs = list(worker.tasks.values())
    for job in jobs:
        job.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    worker.tasks.clear()
    await worker.close()


BotT = TypeVar("BotT", bound="RestartableBot")
# The tiny klein as a deployment's settings name it (with a short training), for settings.model_copy(update=...).
KLEIN = {"model": "tiny-flux2", "device": "cpu", "train_steps": 8}


@contextlib.asynccontextmanager
async def with_klein_worker(bot: BotT) -> AsyncIterator[BotT]:
    """``bot`` running beside a serving klein worker that offers previews, as a klein deployment runs."""
    await bot.start()
    try:
        async with serving_worker(bot.settings, bot.model, offers="references"):
            yield bot
    finally:
        await bot.stop()


async def reached_state(core: CoreContext, user_key: str, state: SessionState, timeout_s: float) -> bool:
    """Whether delivery moves the user's session to ``state``, with no job open, within ``timeout_s``.

    Reads under the user's lock, as the bot's own handlers do: delivery changes the state before it posts the
    message that goes with it, so a lock-free read could see READY while "Your model is ready" is still unsent.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with core.locks.hold(user_key):
            session = await core.store.current_session(user_key)
            if session is not None and session.state == state and await core.store.active_job(user_key) is None:
                return True
        await asyncio.sleep(0.05)
    return False


T = TypeVar("T")


async def wait_on(changed: asyncio.Condition, probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Wait until ``probe()`` is truthy, re-checking whenever ``changed`` is notified (and every 0.5 s)."""
    deadline = time.monotonic() + timeout_s
    async with changed:
        while not (found := probe()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what or probe}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, 0.5))
        return found


class RestartableBot:
    """The bot process as ``headshot-bot`` runs it (BotApp, one chat frontend, delivery), stopped and started at will.

    Subclasses say which frontend to build and which event means it is up.
    """

    def __init__(self, settings: Settings, model: Any) -> None:
        self.settings = settings
        self.model = model

    def make_frontend(self) -> Any:
        raise NotImplementedError

    def frontend_up(self) -> asyncio.Event:
        raise NotImplementedError

    async def start(self) -> None:
        assert self.settings.redis_url is not None
        self.app = BotApp(self.settings, self.settings.redis_url, consumer_name="test-bot")
        await self.app.__aenter__()
        self.frontend = self.make_frontend()  # a fresh client, as a new process has
        platform = self.frontend.port.platform
        self.app.start_delivery({platform: self.frontend.port})
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.frontend.run(self.app, self._stop))
        up = asyncio.create_task(self.frontend_up().wait())
        done, _ = await asyncio.wait({up, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            up.cancel()
            self._task.result()  # raises what stopped the frontend
        assert up in done, f"the {platform} frontend did not come up in 30 s"

    async def stop(self) -> None:
        self._stop.set()
        await self._task
        await self.app.__aexit__(None, None, None)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def run_worker(self) -> WorkerState:
        return await run_burst_worker(self.settings, self.model)

    async def wait_state(self, user: Any, state: SessionState, timeout_s: float = 60) -> None:
        key = f"{self.frontend.port.platform}:{user.id}"
        if await reached_state(self.app.core, key, state, timeout_s):
            return
        raise AssertionError(f"{key} never reached {state!r}")


class Harness:
    def __init__(
        self, settings: Settings, model: Any, out: Path, *, user: str = "alice", consumer_name: str = "test-bot"
    ) -> None:
        assert settings.redis_url is not None
        self.settings = settings
        self.model = model
        self.lines: list[str] = []
        self.port = LocalChatPort(out, write=self.lines.append)
        self.app = BotApp(settings, settings.redis_url, consumer_name=consumer_name)
        self.user = user

    async def __aenter__(self) -> Harness:
        await self.app.__aenter__()
        self.chat = LocalChat(self.app.service, self.port, user=self.user)
        return self

    def start_delivery(self) -> None:
        self.app.start_delivery({self.port.platform: self.port})

    async def __aexit__(self, *exc: Any) -> None:
        await self.app.__aexit__(None, None, None)

    async def say(self, line: str) -> str:
        """Send a line; return everything the bot wrote in answer, joined."""
        before = len(self.lines)
        await self.chat.say(line)
        return "\n".join(self.lines[before:])

    async def tap(self, answer: str, label: str) -> str:
        """Press the button ``label`` under ``answer``: the local chat shows each as the command it types."""
        found = re.search(rf"\[{re.escape(label)}\] -> type: (.+)", answer)
        assert found is not None, f"no button {label!r} in:\n{answer}"
        return await self.say(found[1].strip())

    async def run_worker(self, image_safety: ImageSafety | None = None) -> None:
        await run_burst_worker(self.settings, self.model, image_safety)

    async def train_to_ready(self, selfie_dir: Path) -> None:
        """Start delivery, send the folder's selfies, train with a burst worker, and wait for READY."""
        self.start_delivery()
        await self.say(f"/train {selfie_dir}")
        await self.say("/train start")
        await self.run_worker()
        await self.wait_state(SessionState.READY)

    async def seconds_until_said(self, needle: str, timeout_s: float) -> float:
        """Seconds until the chat shows a line containing ``needle``; fails with the whole chat after ``timeout_s``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if any(needle in line for line in self.lines):
                return time.monotonic() - started
            await asyncio.sleep(0.05)
        raise AssertionError(f"never saw {needle!r} in the chat:\n" + "\n".join(self.lines))

    async def session_state(self, user_key: str | None = None) -> str | None:
        session = await self.app.store.current_session(user_key or self.chat.chat.user_key)
        return None if session is None else session.state

    async def wait_state(self, state: SessionState, timeout_s: float = 30) -> None:
        """Wait until delivery has moved the session to ``state`` and no job is open."""
        if await reached_state(self.app.core, self.chat.chat.user_key, state, timeout_s):
            return
        raise AssertionError(
            f"session stayed {await self.session_state()!r}, wanted {state!r}; chat:\n" + "\n".join(self.lines)
        )

    async def selfie_count(self) -> int:
        session = await self.app.store.current_session(self.chat.chat.user_key)
        return 0 if session is None else len(await self.app.store.selfie_keys(self.chat.chat.user_key, session.id))
