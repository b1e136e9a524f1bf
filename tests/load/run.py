"""``python -m tests.load.run --users 500``: simulated users through the chat core against a real Redis and worker.

Each user is a chat of the ``load`` platform talking to the real ``HeadshotService`` (the core every frontend uses,
with delivery and the watchdog running as in ``headshot-bot``): ``/train`` with 3 selfies attached, ``/train start``,
then, once the model is ready, ``/headshot studio`` for one image. One real worker process (``python -m
jobs.worker.main``) on the tiny model does the jobs (4 image-steps of training, 1 denoising step). With
``--blockers 0.1`` a tenth of the users block the bot right after ``/train start``: from then on their chat refuses
everything as a blocked chat does (``ChatUnreachable``). Reported:

- reply latency: message in -> the handler's replies out (``handle_message`` returns after its replies are sent),
  split by command, and message in -> its first reply (for uploads, the "checking" status before the verdicts);
- jobs lost: jobs of healthy users who never got their model or headshot before the deadline (must be 0);
- events delivered twice: a "model ready" or a headshot posted more than once to one chat (must be 0);
- delivery delay: the worker's event (its stream entry's time) -> posted in the chat, for healthy users' results;
- blocked users whose session is still held by a job, and the stream's pending entries at the end (both must be 0).

Bounded: ``--timeout`` seconds for the whole run (default 60 + 3 s per user), ``--users`` chats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot.app import BotApp
from bot.core import texts
from bot.core.session import SessionState
from bot.core.types import Attachment, Button, ChatRef, ChatUnreachable, IncomingMessage, OutgoingImage, Reply
from bot.local.samples import make_sample_selfies
from jobs.contract.events import EventType
from jobs.contract.stream import BOT_GROUP
from jobs.ops.redis_server import embedded_redis
from jobs.settings import Settings
from tests.faults.processes import WorkerProcess

__all__ = ["LoadResult", "main", "run_load"]

PLATFORM = "load"
READY_MARK = texts.TRAINED.split("!")[0]  # "Your model is ready"


@dataclass
class LoadResult:
    users: int
    seconds: float = 0.0
    messages: int = 0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_max_ms: float = 0.0
    p50_p99_ms_by_command: dict[str, list[float]] = field(default_factory=dict)
    first_reply_p50_p99_ms_by_command: dict[str, list[float]] = field(default_factory=dict)
    jobs_expected: int = 0
    jobs_done: int = 0
    jobs_lost: int = 0
    events_delivered_twice: int = 0
    unanswered_messages: int = 0
    restarts_seen: int = 0
    lost_users: list[str] = field(default_factory=list)
    blockers: int = 0
    blockers_still_held: list[str] = field(default_factory=list)
    pending_at_end: int = 0
    delivery_delay_p50_ms: float = 0.0
    delivery_delay_p99_ms: float = 0.0
    delivery_delay_max_ms: float = 0.0


class CountingPort:
    """A ``ChatPort`` that keeps what each chat received and wakes the user waiting for it."""

    platform = PLATFORM

    def __init__(self) -> None:
        self.texts: dict[str, list[str]] = defaultdict(list)
        self.images: Counter[str] = Counter()
        self.changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.blocked: set[str] = set()
        self.posted_at: dict[tuple[str, str], float] = {}  # (chat, "ready" | "image") -> wall time of the first
        self.replied_at: dict[str, list[float]] = defaultdict(list)  # chat -> perf_counter of each send or edit
        self._next_id = 0

    def _id(self, chat_id: str) -> str:
        if chat_id in self.blocked:
            raise ChatUnreachable("load: bot was blocked by the user")
        self.replied_at[chat_id].append(time.perf_counter())
        self._next_id += 1
        return str(self._next_id)

    async def send(self, chat_id: str, reply: Reply) -> str:
        message_id = self._id(chat_id)
        self.texts[chat_id].append(reply.text)
        if READY_MARK in reply.text:
            self.posted_at.setdefault((chat_id, "ready"), time.time())
        self.changed[chat_id].set()
        return message_id

    async def edit(self, chat_id: str, message_id: str, reply: Reply, *, final: bool = False) -> None:
        self._id(chat_id)
        self.changed[chat_id].set()

    async def send_image(self, chat_id: str, image: OutgoingImage, buttons: Sequence[Button] = ()) -> str:
        message_id = self._id(chat_id)
        self.images[chat_id] += 1
        self.posted_at.setdefault((chat_id, "image"), time.time())
        self.changed[chat_id].set()
        return message_id

    upload_limit_bytes = 50 * 10**6

    async def send_files(self, chat_id: str, files: Sequence[OutgoingImage]) -> None:
        self._id(chat_id)
        self.changed[chat_id].set()

    def ready_count(self, chat_id: str) -> int:
        return sum(READY_MARK in text for text in self.texts[chat_id])

    async def wait_for(self, chat_id: str, *, images: bool = False) -> None:
        """Until the chat has its model (or, with ``images``, a headshot)."""
        event = self.changed[chat_id]
        while not (self.images[chat_id] if images else self.ready_count(chat_id)):
            event.clear()
            await event.wait()


def load_settings(data_dir: Path, redis_url: str, model_cache_dir: Path | None = None) -> Settings:
    values = {
        "model_cache_dir": model_cache_dir,
        "redis_url": redis_url,
        "data_dir": data_dir,
        "model": "tiny",
        "min_selfies": 3,
        "max_selfies": 3,
        "train_steps": 4,
        "inference_steps": 1,
        "headshots_per_request": 1,
        "first_headshots": 0,  # each user asks for their headshot, as when BENCHMARKS.md's figures were measured
        "progress_interval_s": 1.0,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def _chat(number: int) -> ChatRef:
    return ChatRef(PLATFORM, f"u{number:04d}", f"u{number:04d}")


async def _user(
    app: BotApp,
    port: CountingPort,
    number: int,
    selfies: list[bytes],
    latencies: dict[str, list[float]],
    unanswered: list[str],
    *,
    blocks: bool,
) -> None:
    chat = _chat(number)

    async def say(text: str, attachments: tuple[Attachment, ...] = ()) -> None:
        before, replies = len(port.texts[chat.chat_id]), len(port.replied_at[chat.chat_id])
        started = time.perf_counter()
        await app.service.handle_message(IncomingMessage(chat, text, attachments), port)
        latencies.setdefault(text, []).append(time.perf_counter() - started)
        if len(port.texts[chat.chat_id]) == before:
            unanswered.append(f"{chat.user_key}: {text}")
        if len(port.replied_at[chat.chat_id]) > replies:  # the first thing the user saw of the answer
            first = port.replied_at[chat.chat_id][replies] - started
            latencies.setdefault(f"first reply: {text}", []).append(first)

    await say("/train", tuple(Attachment(f"selfie{index}.jpg", data) for index, data in enumerate(selfies)))
    await say("/train start")
    if blocks:  # mid-job: the training is queued, and the user blocks the bot
        port.blocked.add(chat.chat_id)
        return
    await port.wait_for(chat.chat_id)
    await say("/headshot studio")
    await port.wait_for(chat.chat_id, images=True)


def _blocks(number: int, users: int, share: float) -> bool:
    """Every ``1/share``-th user blocks the bot (spread over the arrivals, not bunched at one end)."""
    return share > 0 and int((number + 1) * share) > int(number * share)


async def run_load(
    users: int,
    work_dir: Path,
    redis_url: str,
    *,
    timeout_s: float,
    ramp_s: float,
    model_cache_dir: Path | None = None,
    blockers: float = 0.0,
) -> LoadResult:
    """Start the worker, let ``users`` chats arrive over ``ramp_s`` seconds, wait for all or the deadline."""
    settings = load_settings(work_dir / "data", redis_url, model_cache_dir)
    selfie_dir = work_dir / "selfies"
    selfies = [path.read_bytes() for path in make_sample_selfies(selfie_dir, count=3)]
    worker = WorkerProcess(settings, work_dir / "worker.log")
    blocking = {number for number in range(users) if _blocks(number, users, blockers)}
    result = LoadResult(users=users, jobs_expected=2 * (users - len(blocking)), blockers=len(blocking))
    latencies: dict[str, list[float]] = {}
    unanswered: list[str] = []
    port = CountingPort()
    await worker.start(timeout_s=300)
    try:
        async with BotApp(settings, redis_url, consumer_name="load-bot") as app:
            await app.pool.flushdb()
            app.start_delivery({PLATFORM: port})
            started = time.monotonic()

            async def arrive(number: int) -> None:
                await asyncio.sleep(ramp_s * number / max(1, users))
                await _user(app, port, number, selfies, latencies, unanswered, blocks=number in blocking)

            tasks = [asyncio.create_task(arrive(number)) for number in range(users)]
            _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            result.seconds = round(time.monotonic() - started, 2)
            await _settled(app, settings, deadline=time.monotonic() + 30)
            await asyncio.sleep(1.0)  # a late duplicate would show up now
            result.pending_at_end = await _pending(app, settings)
            for number in sorted(blocking):
                session = await app.store.current_session(_chat(number).user_key)
                if session is not None and session.state in (SessionState.TRAINING, SessionState.GENERATING):
                    result.blockers_still_held.append(_chat(number).chat_id)
            delays = await _delivery_delays(app, settings, port, blocking)
    finally:
        worker.stop()
    _summarise(result, port, latencies, unanswered, users, blocking)
    if delays:
        result.delivery_delay_p50_ms, result.delivery_delay_p99_ms = _p50_p99(delays)
        result.delivery_delay_max_ms = round(1000 * max(delays), 1)
    return result


async def _pending(app: BotApp, settings: Settings) -> int:
    return int((await app.pool.xpending(settings.events_stream, BOT_GROUP))["pending"])


async def _settled(app: BotApp, settings: Settings, deadline: float) -> None:
    """Until the worker's queue is empty and the bot has settled every event it read (or the deadline)."""
    while time.monotonic() < deadline:
        queued = int(await app.pool.zcard(settings.queue_name))
        if not queued and not await _pending(app, settings):
            return
        await asyncio.sleep(0.2)


async def _delivery_delays(app: BotApp, settings: Settings, port: CountingPort, blocking: set[int]) -> list[float]:
    """Seconds from each healthy user's ``trained`` / ``images_ready`` entry on the stream to its post in the chat."""
    kinds = {EventType.TRAINED.value: "ready", EventType.IMAGES_READY.value: "image"}
    blocked = {_chat(number).user_key for number in blocking}
    delays = []
    for entry_id, fields in await app.pool.xrange(settings.events_stream):
        kind = kinds.get(_text(fields.get(b"type", fields.get("type", b""))))
        user_key = _text(fields.get(b"user_key", fields.get("user_key", b"")))
        if kind is None or user_key in blocked:
            continue
        posted = port.posted_at.get((user_key.split(":", 1)[1], kind))
        if posted is not None:
            delays.append(max(0.0, posted - int(_text(entry_id).split("-")[0]) / 1000))
    return delays


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _p50_p99(values: list[float]) -> list[float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return [round(1000 * statistics.median(ordered), 1), round(1000 * p99, 1)]


def _summarise(
    result: LoadResult,
    port: CountingPort,
    latencies: dict[str, list[float]],
    unanswered: list[str],
    users: int,
    blocking: set[int],
) -> None:
    firsts = {key.removeprefix("first reply: "): values for key, values in latencies.items() if key.startswith("first")}
    latencies = {key: values for key, values in latencies.items() if not key.startswith("first reply: ")}
    result.first_reply_p50_p99_ms_by_command = {command: _p50_p99(values) for command, values in firsts.items()}
    every = [value for values in latencies.values() for value in values]
    result.messages = len(every)
    if every:
        result.latency_p50_ms, result.latency_p99_ms = _p50_p99(every)
        result.latency_max_ms = round(1000 * max(every), 1)
        result.p50_p99_ms_by_command = {command: _p50_p99(values) for command, values in latencies.items()}
    for number in range(users):
        if number in blocking:
            continue
        chat_id = f"u{number:04d}"
        ready, images = port.ready_count(chat_id), port.images[chat_id]
        result.jobs_done += min(ready, 1) + min(images, 1)
        result.events_delivered_twice += max(0, ready - 1) + max(0, images - 1)
        result.restarts_seen += sum("restarted" in text for text in port.texts[chat_id])
        if not (ready and images):
            result.lost_users.append(chat_id)
    result.jobs_lost = result.jobs_expected - result.jobs_done
    result.unanswered_messages = len(unanswered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500, help="simulated users (default 500)")
    parser.add_argument("--timeout", type=float, help="seconds the whole run may take (default 60 + 3 per user)")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which the users arrive")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument("--blockers", type=float, default=0.0, help="share of users who block the bot mid-job")
    args = parser.parse_args(argv)
    if args.users < 1:
        parser.error(f"--users must be at least 1, got {args.users}")
    if not 0 <= args.blockers < 1:
        parser.error(f"--blockers is a share of the users, from 0 up to (not including) 1, got {args.blockers}")
    timeout_s = args.timeout or 60 + 3 * args.users
    with tempfile.TemporaryDirectory(prefix="load-") as scratch, embedded_redis(os.environ.get("REDIS_URL")) as url:
        run = run_load(args.users, Path(scratch), url, timeout_s=timeout_s, ramp_s=args.ramp, blockers=args.blockers)
        result = asyncio.run(run)
    print(json.dumps(asdict(result)))
    print(
        f"{result.users} users in {result.seconds:.0f} s: reply latency p50 {result.latency_p50_ms} ms, "
        f"p99 {result.latency_p99_ms} ms over {result.messages} messages; jobs lost {result.jobs_lost} "
        f"of {result.jobs_expected}; events delivered twice {result.events_delivered_twice}; "
        f"unanswered messages {result.unanswered_messages}; delivery delay p99 {result.delivery_delay_p99_ms} ms, "
        f"max {result.delivery_delay_max_ms} ms; blockers {result.blockers}, still held "
        f"{len(result.blockers_still_held)}; pending at end {result.pending_at_end}"
    )
    if args.out:
        args.out.write_text(json.dumps(asdict(result), indent=2))
    healthy = (
        result.jobs_lost == 0
        and result.events_delivered_twice == 0
        and result.unanswered_messages == 0
        and not result.blockers_still_held
        and result.pending_at_end == 0
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
