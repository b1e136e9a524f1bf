"""``headshot-bot``'s process (``bot.main.serve``) with the real Discord frontend: one frontend failing never takes
another down, and a shutdown lets the deliveries in flight finish before the chat clients close."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.app import BotApp
from bot.core.session import JobStatus, SessionState
from bot.discord import DiscordFrontend, DiscordOptions
from bot.local.port import LocalChatPort
from bot.main import FrontendSpec, serve
from bot.store.database import Store
from bot.store.schema import JobRow
from jobs.contract.events import Trained
from jobs.contract.keys import lora_key
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import train_job_id
from jobs.contract.stream import BOT_GROUP, EventPublisher
from jobs.settings import Settings
from tests.bot.discord.conftest import ALICE, TOKEN
from tests.bot.discord.standin import DiscordStandin


class _Failing:
    """A frontend whose first runs fail at once (as with a refused token), then one that serves until stopped."""

    def __init__(self, out: Path, starts: list[float], failures: int) -> None:
        self.port = LocalChatPort(out, write=lambda line: None)
        self.starts = starts
        self.failures = failures

    async def run(self, app: BotApp, stop: asyncio.Event) -> None:
        self.starts.append(time.monotonic())
        if len(self.starts) <= self.failures:
            raise RuntimeError("the platform refused the token")
        await stop.wait()


def _discord_spec(options: DiscordOptions, built: list[DiscordFrontend]) -> FrontendSpec:
    def factory(settings: Settings) -> DiscordFrontend:
        built.append(DiscordFrontend(settings, options))
        return built[-1]

    return FrontendSpec("discord", "discord_token", factory)


async def _serving(task: asyncio.Task[None], built: list[DiscordFrontend]) -> None:
    """Wait for the Discord frontend's gateway session; fail with serve's own error if it ended instead."""
    deadline = time.monotonic() + 20
    while not (built and built[-1].up.is_set()):
        if task.done():
            task.result()
        assert time.monotonic() < deadline, "the Discord frontend did not come up"
        await asyncio.sleep(0.05)


async def test_a_failing_frontend_is_restarted_on_its_own_while_discord_serves(
    settings: Settings,
    discord_options: DiscordOptions,
    standin: DiscordStandin,
    redis: Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings.model_copy(update={"discord_token": SecretStr(TOKEN)})
    built: list[DiscordFrontend] = []
    starts: list[float] = []
    failing = FrontendSpec("other", "telegram_token", lambda _: _Failing(tmp_path / "out", starts, failures=2))
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(
            settings, str(settings.redis_url), [_discord_spec(discord_options, built), failing], stop, first_pause_s=0.2
        )
    )
    try:
        # 1. Discord serves DMs while the other frontend fails twice.
        await _serving(task, built)
        await standin.send_dm(ALICE, "/help")
        await standin.wait_for(lambda: standin.with_text(ALICE, "/headshot <style>"), timeout_s=10, what="the help")

        # 2. The other is built afresh and started again after a pause that doubles: 0.2 s, then 0.4 s.
        deadline = time.monotonic() + 10
        while len(starts) < 3:
            assert time.monotonic() < deadline, f"started {len(starts)} times"
            await asyncio.sleep(0.05)
        pauses = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
        assert pauses[0] >= 0.2 and pauses[1] >= 0.4, pauses
        assert caplog.text.count("the other frontend failed") == 2 and "refused the token" in caplog.text
        assert len(built) == 1 and not task.done()  # Discord itself was never restarted
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)  # and the stop ends everything without an error


async def test_a_shutdown_lets_the_delivery_in_flight_finish_before_the_client_closes(
    settings: Settings, discord_options: DiscordOptions, standin: DiscordStandin, redis: Redis
) -> None:
    settings = settings.model_copy(update={"discord_token": SecretStr(TOKEN)})
    user_key = f"discord:{ALICE.id}"
    # 1. Alice's training is running (as after Start training); Discord answers posts in her DM slowly.
    async with Store(settings.resolved_database_path) as store:
        await store.ensure_user(user_key, "discord", str(ALICE.dm))
        session = await store.new_session(user_key, SessionState.TRAINING)
        job_id = train_job_id(user_key, session.id, 0)
        await store.add_job(JobRow(job_id, user_key, session.id, JobKind.TRAIN, JobStatus.RUNNING, None, None))
    standin.delay("POST", f"/channels/{ALICE.dm}/messages", 0.8)
    built: list[DiscordFrontend] = []
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, str(settings.redis_url), [_discord_spec(discord_options, built)], stop))
    await _serving(task, built)

    # 2. Her model is trained; while its messages are on their way, the bot is told to stop.
    await EventPublisher(redis, settings.events_stream).publish(
        Trained(user_key=user_key, job_id=job_id, lora_key=lora_key(user_key, 1))
    )
    await standin.wait_for(lambda: standin.called("POST", f"/channels/{ALICE.dm}/messages"), what="a post in flight")
    stop.set()
    await asyncio.wait_for(task, 20)

    # 3. Receiving stopped first; both posts were answered after that, and the event was acked (not left pending).
    texts = [sent.content for sent in standin.messages(ALICE)]
    assert len(texts) == 2 and texts[0].startswith("Training finished") and "Your model is ready" in texts[1], texts
    assert all(call.status == 200 for call in standin.called("POST", f"/channels/{ALICE.dm}/messages"))
    assert standin.disconnected and standin.disconnected[-1] < standin.messages(ALICE)[0].history[0][0]
    assert (await redis.xpending(settings.events_stream, BOT_GROUP))["pending"] == 0
    async with Store(settings.resolved_database_path) as store:
        now = await store.current_session(user_key)
        assert now is not None and now.state == SessionState.READY
