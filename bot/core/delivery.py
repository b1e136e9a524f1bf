"""Worker events back into the right chat: progress edits one message, results are posted, then acked.

At-least-once with idempotence: an event is acked only after its chat calls succeeded and its id was recorded, so a
bot that dies mid-delivery re-delivers on restart, and an event seen twice is posted once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from redis.exceptions import RedisError

from bot.core import session, texts
from bot.core.context import CoreContext
from bot.core.erase import forget_event
from bot.core.retention import forget_expired, forget_selfies_after_training
from bot.core.types import ChatPort, OutgoingImage, Reply
from bot.store.schema import JobRow, JobStatus
from jobs.contract.events import Cancelled, Event, Expired, Failed, ImagesReady, Progress, Started, Trained
from jobs.contract.kinds import JobKind
from jobs.contract.stream import EventConsumer
from jobs.logging_setup import log_context

__all__ = ["EventDelivery"]

log = logging.getLogger(__name__)

READ_RETRY_S = 2.0


class EventDelivery:
    def __init__(self, core: CoreContext, ports: Mapping[str, ChatPort]) -> None:
        self.core = core
        self.ports = ports

    async def run(self, consumer: EventConsumer, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; an event whose delivery fails stays pending and is tried again."""
        group_ready = False
        while not stop.is_set():
            try:
                if not group_ready:
                    await consumer.ensure_group()
                    group_ready = True
                events = await consumer.read(block_ms=500)
            except RedisError:
                # Redis restarting or unreachable: wait and read again; unacked events are still there.
                log.warning("reading worker events failed; retrying in %.0f s", READ_RETRY_S, exc_info=True)
                await asyncio.sleep(READ_RETRY_S)
                continue
            for event in events:
                try:
                    delivered = await self.deliver(event)
                except Exception:
                    log.exception("delivering %s event of job %s failed; will retry", event.type, event.job_id)
                    await asyncio.sleep(1.0)
                    continue
                if delivered:
                    await consumer.ack(event)

    async def deliver(self, event: Event) -> bool:
        """Post one event to its chat. False when that user's platform has no frontend running here."""
        port = self.ports.get(event.user_key.split(":", 1)[0])
        if port is None:
            return False
        async with self.core.locks.hold(event.user_key), log_context(user_key=event.user_key, job_id=event.job_id):
            store = self.core.store
            if event.event_id and await store.was_delivered(event.event_id):
                return True
            chat_id = await store.chat_of(event.user_key)
            if isinstance(event, Expired):
                await forget_expired(self.core, event, chat_id, port)
            else:
                job = await store.job(event.user_key, event.job_id)
                if job is None or chat_id is None:
                    # The user erased their data (/delete) while the job ran: erase what the job left behind too,
                    # the event included (so no delivery record of it is kept either).
                    await forget_event(self.core, event)
                    return True
                if not job.status.finished:
                    self.core.heartbeats.heard(event.job_id)
                    await self._apply(event, job, chat_id, port)
                elif job.status == JobStatus.CANCELLED and isinstance(event, ImagesReady):
                    # /cancel came after the render had finished: the user asked not to get these, so erase them.
                    await self._discard_outputs(event)
            if event.event_id:
                await store.mark_delivered(event.event_id)
            return True

    async def _apply(self, event: Event, job: JobRow, chat_id: str, port: ChatPort) -> None:
        training = job.kind == JobKind.TRAIN
        if isinstance(event, Started):
            await session.job_started(self.core.store, job)
            await self._edit_progress(
                job, chat_id, port, texts.STARTED_TRAINING if training else texts.STARTED_RENDERING
            )
            if event.try_number > 1:  # a worker died mid-job (or stopped) and another run began
                restarted = texts.RESTARTED_TRAINING if training else texts.RESTARTED_RENDERING
                await port.send(chat_id, Reply(restarted.format(try_number=event.try_number)))
        elif isinstance(event, Progress):
            await self._edit_progress(
                job, chat_id, port, texts.progress(job.kind, event.done, event.total, event.eta_s)
            )
        elif isinstance(event, Trained):
            await session.model_trained(self.core.store, job, event.lora_key)
            await forget_selfies_after_training(self.core, event.user_key, job.session_id)
            await self._edit_progress(job, chat_id, port, texts.TRAINING_FINISHED, final=True)
            await port.send(chat_id, Reply(texts.TRAINED))
        elif isinstance(event, ImagesReady):
            await self._post_images(event, job, chat_id, port)
        elif isinstance(event, Failed | Cancelled):
            await self._end_unsuccessfully(event, job, chat_id, port)

    async def _post_images(self, event: ImagesReady, job: JobRow, chat_id: str, port: ChatPort) -> None:
        store = self.core.store
        first_number = len(await store.images(event.user_key)) + 1
        images = [
            OutgoingImage(
                filename=item.key.rsplit("/", 1)[-1],
                data=await self.core.storage.get(item.key),
                caption=texts.IMAGE_CAPTION.format(number=first_number + index, style=event.title, seed=item.seed),
            )
            for index, item in enumerate(event.images)
        ]
        await self._edit_progress(job, chat_id, port, texts.IMAGES_READY.format(style=event.title), final=True)
        message_ids = await port.send_images(chat_id, images)
        for item, message_id in zip(event.images, message_ids, strict=True):
            await store.add_image(event.user_key, job.job_id, item.key, item.seed, message_id)
        await session.images_posted(store, job)
        # Buttons always work where reactions may not reach the bot. The images are posted and recorded already,
        # so a failure here must not fail the event (its redelivery would post the images twice).
        buttons = tuple(texts.favorite_button(first_number + index) for index in range(len(images)))
        try:
            await port.send(chat_id, Reply(texts.FAVORITE_PICK, buttons))
        except Exception:
            log.warning("posting favorite buttons for job %s failed; /favorite <n> still works", job.job_id,
                        exc_info=True)  # fmt: skip

    async def _end_unsuccessfully(self, event: Failed | Cancelled, job: JobRow, chat_id: str, port: ChatPort) -> None:
        if isinstance(event, Failed):
            await session.job_ended(self.core.store, job, JobStatus.FAILED)
            text = texts.explain(event.reason, event.params, job.kind)
        else:
            await session.job_ended(self.core.store, job, JobStatus.CANCELLED)
            text = texts.CANCELLED_TRAINING if job.kind == JobKind.TRAIN else texts.CANCELLED_RENDERING
        await self._edit_progress(job, chat_id, port, text, final=True)

    async def _edit_progress(
        self, job: JobRow, chat_id: str, port: ChatPort, text: str, *, final: bool = False
    ) -> None:
        """Edit the job's progress message; a lost progress edit is not worth a retry, a final one is re-sent."""
        reply = Reply(text, () if final else (texts.CANCEL_BUTTON,))
        if job.progress_message_id is None:
            if final:
                await port.send(chat_id, reply)
            return
        try:
            await port.edit(chat_id, job.progress_message_id, reply, final=final)
        except Exception:
            if final:
                await port.send(chat_id, reply)
            else:
                log.warning("progress edit for job %s failed; skipped", job.job_id, exc_info=True)

    async def _discard_outputs(self, event: ImagesReady) -> None:
        keys = event.output_keys()
        for key in keys:
            await self.core.storage.delete(key)
        if keys:
            log.info("discarded %d outputs of job %s that nobody waits for", len(keys), event.job_id)
