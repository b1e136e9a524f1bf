"""Worker events back into the right chat: progress edits one message, results are posted, then acked.

At-least-once with idempotence: an event is acked only after its chat calls succeeded and its id was recorded, so a
bot that dies mid-delivery re-delivers on restart, and an event seen twice is posted once.

Each event is delivered in a task of its own (a user's events in order, under that user's lock), so one user's slow
or failing chat never holds up another user's delivery. A failure is settled per event, never by sleeping:
- ``Undeliverable`` (the platform refused for good: the user blocked the bot, a file too big): the job ends as
  undeliverable, its session is free, and the event is acked;
- anything else is transient: the event stays pending and is claimed again once idle ``delivery_retry_s``; after
  ``delivery_max_tries`` deliveries (Redis counts them) it moves to the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from enum import Enum
from typing import Protocol

from redis.exceptions import RedisError

from bot.core import session, texts
from bot.core.context import CoreContext
from bot.core.erase import forget_event
from bot.core.event_posts import EventPosts
from bot.core.retention import forget_expired
from bot.core.types import ChatPort, ChatUnreachable, Reply, Undeliverable
from bot.store.schema import JobRow, JobStatus
from jobs.contract.events import Event, Expired, Failed, ImagesReady, Progress, Started, Trained
from jobs.contract.stream import EventConsumer
from jobs.logging_setup import log_context

__all__ = ["DeliveryMetrics", "EventDelivery"]

log = logging.getLogger(__name__)

READ_RETRY_S = 2.0
# Events being delivered at once: a user's wait on their lock, cheaply, so one slow chat can hold many without
# holding up the others; past the bound, reading waits for one to finish (memory stays bounded).
MAX_IN_FLIGHT = 256
READ_COUNT = 50


class DeliveryMetrics(Protocol):
    """What delivery counts (``bot.metrics.BotMetrics``)."""

    def count_undeliverable(self, platform: str) -> None: ...

    def count_dead_letter(self, event_type: str) -> None: ...


class _Outcome(Enum):
    DELIVERED = "delivered"  # posted (or nothing left to post): ack
    UNDELIVERABLE = "undeliverable"  # the chat refused for good and the job was given up: ack, not counted delivered
    NO_FRONTEND = "no_frontend"  # that user's platform runs elsewhere: leave it pending


class EventDelivery:
    def __init__(
        self, core: CoreContext, ports: Mapping[str, ChatPort], *, metrics: DeliveryMetrics | None = None
    ) -> None:
        self.core = core
        self.ports = ports
        self.metrics = metrics
        self.posts = EventPosts(core)

    async def run(self, consumer: EventConsumer, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, each event in a task of its own; an event whose delivery fails stays
        pending and is tried again once idle long enough."""
        in_flight: dict[str, asyncio.Task[None]] = {}
        group_ready = False
        try:
            while not stop.is_set():
                for key in [key for key, task in in_flight.items() if task.done()]:
                    del in_flight[key]
                if len(in_flight) >= MAX_IN_FLIGHT:
                    await asyncio.wait(set(in_flight.values()), timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    if not group_ready:
                        await consumer.ensure_group()
                        group_ready = True
                    events = await consumer.read(block_ms=500, count=min(READ_COUNT, MAX_IN_FLIGHT - len(in_flight)))
                except RedisError:
                    # Redis restarting or unreachable: wait and read again; unacked events are still there.
                    log.warning("reading worker events failed; retrying in %.0f s", READ_RETRY_S, exc_info=True)
                    await asyncio.sleep(READ_RETRY_S)
                    continue
                for event in events:
                    key = event.event_id or str(id(event))
                    if key in in_flight:  # claimed again while its first delivery is still running
                        continue
                    in_flight[key] = asyncio.create_task(self._settle(consumer, event), name=f"deliver-{key}")
            if in_flight:  # let what started finish (the app cancels us if it takes too long)
                await asyncio.wait(set(in_flight.values()))
        finally:
            for task in in_flight.values():
                task.cancel()

    async def deliver(self, event: Event) -> bool:
        """Post one event to its chat. False when that user's platform has no frontend running here.

        A refusal for good is settled here (the job given up); any other failure is raised, for a later try.
        """
        return await self._deliver(event) is not _Outcome.NO_FRONTEND

    async def give_up(self, job: JobRow, error: Undeliverable) -> None:
        """The chat refused a word about ``job`` for good (the watchdog's finding): end it as delivery would."""
        port = self.ports.get(job.user_key.split(":", 1)[0])
        async with self.core.locks.hold(job.user_key), log_context(user_key=job.user_key, job_id=job.job_id):
            chat_id = await self.core.store.chat_of(job.user_key)
            await self._give_up(job.user_key, job.job_id, error, port, chat_id)

    async def _settle(self, consumer: EventConsumer, event: Event) -> None:
        """Deliver one event and settle it on the stream: ack it, discard it, leave it pending, or dead-letter it."""
        try:
            try:
                outcome = await self._deliver(event)
            except Exception as error:
                await self._failed(consumer, event, error)
                return
            if outcome is _Outcome.DELIVERED:
                await consumer.ack(event)
            elif outcome is _Outcome.UNDELIVERABLE:
                await consumer.discard(event)
        except RedisError:
            # Unsettled, so still pending: it comes back, and its recorded delivery keeps it from posting twice.
            log.warning("settling %s event of job %s failed (Redis away?)", event.type, event.job_id, exc_info=True)

    async def _failed(self, consumer: EventConsumer, event: Event, error: Exception) -> None:
        """A transient failure: leave the event pending for a later try, or dead-letter it after its last."""
        tries, most = await consumer.deliveries(event), self.core.settings.delivery_max_tries
        if tries < most:
            log.warning(
                "delivering %s event of job %s failed (try %d of %d); trying again in %.0f s",
                event.type,
                event.job_id,
                tries,
                most,
                self.core.settings.delivery_retry_s,
                exc_info=error,
            )
            return
        await consumer.dead_letter(event, type(error).__name__)
        log.error(
            "delivering %s event of job %s failed %d times; moved it to the dead letters",
            event.type,
            event.job_id,
            tries,
            exc_info=error,
        )
        if self.metrics is not None:
            self.metrics.count_dead_letter(event.type.value)

    async def _deliver(self, event: Event) -> _Outcome:
        port = self.ports.get(event.user_key.split(":", 1)[0])
        if port is None:
            return _Outcome.NO_FRONTEND
        async with self.core.locks.hold(event.user_key), log_context(user_key=event.user_key, job_id=event.job_id):
            store = self.core.store
            if event.event_id and await store.was_delivered(event.event_id):
                return _Outcome.DELIVERED
            chat_id, left = await store.chat_and_left(event.user_key)
            outcome = _Outcome.DELIVERED
            try:
                if isinstance(event, Expired):
                    await forget_expired(self.core, event, None if left else chat_id, port)
                else:
                    job = await store.job(event.user_key, event.job_id)
                    if job is None or chat_id is None:
                        # The user erased their data (/delete) while the job ran: erase what the job left behind
                        # too, the event included (so no delivery record of it is kept either).
                        await forget_event(self.core, event)
                        return _Outcome.DELIVERED
                    if not job.status.finished or _ended_by(event, job):
                        if left:  # the user blocked the bot: nothing is sent until they write again
                            raise ChatUnreachable(f"{event.user_key} left the chat")
                        self.core.heartbeats.heard(event.job_id)
                        await self.posts.apply(event, job, chat_id, port)
                    elif job.status in (JobStatus.CANCELLED, JobStatus.UNDELIVERABLE) and isinstance(
                        event, ImagesReady
                    ):
                        # /cancel came after the render had finished, or the chat refuses everything: nobody gets
                        # these, so erase them.
                        await self.posts.discard_outputs(event)
            except Undeliverable as error:
                await self._give_up(event.user_key, event.job_id, error, port, chat_id, event)
                outcome = _Outcome.UNDELIVERABLE
            if event.event_id:
                await store.mark_delivered(event.event_id)
            return outcome

    async def _give_up(
        self,
        user_key: str,
        job_id: str,
        error: Undeliverable,
        port: ChatPort | None,
        chat_id: str | None,
        event: Event | None = None,
    ) -> None:
        """The chat refused for good: an open job ends as undeliverable (its session free, its work stopped), and
        nothing it made is kept. Runs under the user's lock."""
        store = self.core.store
        if isinstance(error, ChatUnreachable):
            await store.mark_left(user_key)  # until they write again: nothing more is sent to them
            # Their other open jobs (a training beside its preview) can reach them no better: stopped too.
            for other in await session.all_undeliverable(store, user_key, but=job_id):
                await self.core.queue.request_abort(other.job_id)
        job = await store.job(user_key, job_id)
        ended = job is not None and await session.job_undeliverable(store, job)
        if ended and (event is None or isinstance(event, Started | Progress)):
            await self.core.queue.request_abort(job_id)  # still queued or running: nobody can receive what it makes
        if isinstance(event, ImagesReady):
            await self.posts.discard_outputs(event)
        platform = user_key.split(":", 1)[0]
        log.warning(
            "%s refused job %s's messages for good (%s); %s",
            platform,
            job_id,
            error,
            "the job ended as undeliverable" if ended else "the job had ended already",
        )
        if ended and self.metrics is not None:  # jobs, not events: one blocked user's stream of events counts once
            self.metrics.count_undeliverable(platform)
        if (
            ended
            and job is not None
            and port is not None
            and chat_id is not None
            and not isinstance(error, ChatUnreachable)
        ):
            # The chat still takes text: say what happened, or the user waits for a result that never comes.
            try:
                await port.send(chat_id, Reply(texts.undeliverable(job.kind)))
            except Exception:
                log.warning("telling %s that job %s was undeliverable failed too", user_key, job_id, exc_info=True)


def _ended_by(event: Event, job: JobRow) -> bool:
    """The job ended through this very event (a redelivery after part of it was posted): post the rest."""
    if isinstance(event, Trained | ImagesReady):
        return job.status == JobStatus.DONE
    return isinstance(event, Failed) and job.status == JobStatus.FAILED
