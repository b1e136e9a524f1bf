"""Chats that refuse: real PTB against the stand-in, real Redis, worker events on the real stream.

The worker is stood in by its events (``EventPublisher``, as the worker publishes them): what is under test is how the
bot posts them when Telegram refuses, not the training.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

from arq.constants import abort_jobs_ss
from redis.asyncio import Redis

from bot.core.session import JobStatus, SessionState
from bot.local.samples import make_sample_selfies
from bot.telegram import TelegramOptions
from jobs.contract.events import Failed, Progress, Started, Trained
from jobs.contract.keys import lora_key
from jobs.contract.kinds import JobKind
from jobs.contract.stream import BOT_GROUP, dead_letter_stream
from jobs.ops.status_cli import report
from jobs.settings import Settings
from pipeline.errors import Reason
from tests.bot.telegram.conftest import ALICE, BOB
from tests.bot.telegram.standin import BotApiStandin
from tests.bot.telegram.steps import publish, queue_training, running_bot, with_text

DELIVERY_BOUND_S = 10.0  # the old loop slept 1 s per failing event: 24 of Alice's events held Bob up 24 s or more


async def _until(probe: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_blocked_user_never_holds_up_another_users_delivery(
    settings: Settings,
    telegram_options: TelegramOptions,
    tiny_model: Any,
    standin: BotApiStandin,
    redis: Redis,
    enough_selfies: list[bytes],
    tmp_path: Path,
) -> None:
    bob_photos = [path.read_bytes() for path in make_sample_selfies(tmp_path / "bob", count=3, seed=7)]
    async with running_bot(settings, telegram_options, tiny_model) as bot:
        alice_job = await queue_training(bot, standin, ALICE, enough_selfies)
        bob_job = await queue_training(bot, standin, BOB, bob_photos)

        # 1. Alice blocks the bot while her job runs; her events come first in the stream, then Bob's result. The bot
        # is not told (my_chat_member can trail the 403s): delivery alone has to sort her refusals out.
        await standin.block(ALICE, tell_bot=False)
        alice = "telegram:1001"
        restarts = [
            Started(user_key=alice, job_id=alice_job, kind=JobKind.TRAIN, worker="w", try_number=n)
            for n in range(2, 14)
        ]
        steps = [Progress(user_key=alice, job_id=alice_job, done=n, total=20) for n in range(12)]
        bob = "telegram:1002"
        result = [
            Started(user_key=bob, job_id=bob_job, kind=JobKind.TRAIN, worker="w"),
            Trained(user_key=bob, job_id=bob_job, lora_key="users/telegram%3A1002/lora"),
        ]
        started = time.monotonic()
        await publish(redis, settings, *restarts, *steps, *result)

        # 2. Bob's result arrives at once.
        await standin.wait_for(
            lambda: with_text(standin, BOB, "Your model is ready"), timeout_s=DELIVERY_BOUND_S, what="Bob's result"
        )
        assert time.monotonic() - started < DELIVERY_BOUND_S

        # 3. Alice's events are all settled (none pending), her job is given up and stopped, her session free.
        await _until(lambda: _pending(redis, settings), 5, "no event pending")
        await bot.wait_state(ALICE, SessionState.COLLECTING, timeout_s=5)
        job = await bot.app.store.job(alice, alice_job)
        assert job is not None and job.status == JobStatus.UNDELIVERABLE
        assert await redis.zscore(abort_jobs_ss, alice_job) is not None  # the queued job will not take a GPU
        assert "restarted" not in standin.texts(ALICE.id)  # every call to her chat after the block was refused
        samples = bot.app.metrics.registry
        assert samples.get_sample_value("headshot_bot_jobs_undeliverable_total", {"platform": "telegram"}) == 1


async def _pending(redis: Redis, settings: Settings) -> bool:
    return int((await redis.xpending(settings.events_stream, BOT_GROUP))["pending"]) == 0


async def test_an_event_that_keeps_failing_ends_in_the_dead_letters_and_status_shows_it(
    settings: Settings,
    telegram_options: TelegramOptions,
    tiny_model: Any,
    standin: BotApiStandin,
    redis: Redis,
    enough_selfies: list[bytes],
) -> None:
    async with running_bot(settings, telegram_options, tiny_model, delivery_retry_s=0.3, delivery_max_tries=3) as bot:
        job_id = await queue_training(bot, standin, ALICE, enough_selfies)

        # 1. Telegram answers Alice's chat with 502 Bad Gateway, a failure worth retrying, and keeps doing so.
        standin.fail_chat(ALICE, 502, "Bad Gateway")
        mark = len(standin.calls)
        await publish(
            redis,
            settings,
            Started(user_key="telegram:1001", job_id=job_id, kind=JobKind.TRAIN, worker="w", try_number=2),
        )

        # 2. Three tries, each after the event sat idle, then the event moves to the dead letters, acked.
        dead = dead_letter_stream(settings.events_stream)
        await _until(lambda: _has_entries(redis, dead), 15, "a dead letter")
        assert await _pending(redis, settings)
        tries = [call for call in standin.calls[mark:] if call.method == "sendMessage"]
        assert [call.status for call in tries] == [502, 502, 502]
        assert all(later.at - earlier.at >= 0.25 for earlier, later in zip(tries, tries[1:], strict=False))
        samples = bot.app.metrics.registry
        assert samples.get_sample_value("headshot_bot_events_dead_lettered_total", {"type": "started"}) == 1

        # 3. headshot-status counts it and says which event of whom, and why.
        out = io.StringIO()
        assert await report(redis, settings, out, min_workers=0)
        lines = [" ".join(line.split()) for line in out.getvalue().splitlines()]
        assert f"dead letters: 1 in {dead}" in lines
        assert any(line.endswith(f"started {job_id} telegram:1001: NetworkError") for line in lines), lines


async def _has_entries(redis: Redis, stream: str) -> bool:
    return int(await redis.xlen(stream)) > 0


async def test_a_final_edit_inside_the_throttle_window_that_fails_is_sent_as_a_new_message(
    settings: Settings,
    telegram_options: TelegramOptions,
    tiny_model: Any,
    standin: BotApiStandin,
    redis: Redis,
    enough_selfies: list[bytes],
) -> None:
    options = telegram_options.model_copy(update={"edit_interval_s": 5.0})
    async with running_bot(settings, options, tiny_model) as bot:
        job_id = await queue_training(bot, standin, ALICE, enough_selfies)
        progress = with_text(standin, ALICE, "Training queued")
        assert progress is not None

        # 1. A progress edit lands, and opens a 5 s window in which further edits wait.
        await publish(redis, settings, Started(user_key="telegram:1001", job_id=job_id, kind=JobKind.TRAIN, worker="w"))
        await standin.wait_for(lambda: progress.text == "Training your model: starting…", what="the progress edit")

        # 2. Alice deletes the progress message; then training fails. The final text is not kept for later: its
        # edit goes out now, fails, and the text comes as a new message well inside the window.
        await standin.delete(ALICE, progress.message_id)
        started = time.monotonic()
        await publish(
            redis,
            settings,
            Failed(user_key="telegram:1001", job_id=job_id, kind=JobKind.TRAIN, reason=Reason.TRAINING_FAILED),
        )
        failed = await standin.wait_for(
            lambda: with_text(standin, ALICE, "Training failed on our side"),
            timeout_s=4.5,
            what="the failure, as a new message",
        )
        assert time.monotonic() - started < 4.0
        assert failed.message_id > progress.message_id
        await bot.wait_state(ALICE, SessionState.COLLECTING, timeout_s=5)


async def test_a_user_who_blocked_the_bot_gets_no_first_headshots_and_keeps_the_model(
    settings: Settings,
    telegram_options: TelegramOptions,
    tiny_model: Any,
    standin: BotApiStandin,
    redis: Redis,
    enough_selfies: list[bytes],
) -> None:
    async with running_bot(settings, telegram_options, tiny_model, first_headshots=2) as bot:
        job_id = await queue_training(bot, standin, ALICE, enough_selfies)
        alice = f"telegram:{ALICE.id}"

        # 1. Her training starts; she blocks the bot after its last progress, and the bot is not told before her
        #    model is ready (a block during training ends the job at its next progress edit instead).
        await publish(redis, settings, Started(user_key=alice, job_id=job_id, kind=JobKind.TRAIN, worker="w"))
        await _until(lambda: _pending(redis, settings), 5, "the start delivered")
        await standin.block(ALICE, tell_bot=False)
        mark = len(standin.calls)
        await publish(redis, settings, Trained(user_key=alice, job_id=job_id, lora_key=lora_key(alice, 1)))

        # 2. The news is refused (403: the progress message's last edit) and not tried again; no render is queued
        #    for a chat that takes nothing.
        async def refused() -> bool:
            return any(call.status == 403 for call in standin.calls[mark:])

        await _until(refused, 5, "the news refused")
        await _until(lambda: _pending(redis, settings), 5, "no event pending")
        assert {call.status for call in standin.calls[mark:]} == {403}
        queued = await bot.app.pool.queued_jobs(queue_name=settings.queue_name)
        assert JobKind.GENERATE.function not in {job.function for job in queued}

        # 3. Her model is kept: back, she renders from it as any user with a trained model does.
        await standin.unblock(ALICE)
        await bot.wait_state(ALICE, SessionState.READY, timeout_s=5)
        await standin.send_text(ALICE, "/headshot linkedin")
        await standin.wait_for(lambda: with_text(standin, ALICE, "Rendering 2 LinkedIn profile headshots"), what="ack")
