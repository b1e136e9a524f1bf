"""What each worker event says in its chat: the progress message edited, the job's last word, the headshots each in
a message of its own, the first headshots queued on ``trained``. Every post is recorded once done, so a redelivered
event posts only what is missing (``delivery.EventDelivery`` decides when an event is delivered and settled).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.core import session, texts
from bot.core.context import CoreContext
from bot.core.first_headshots import first_headshots_due, queue_first_headshots, trained_text
from bot.core.retention import forget_selfies_after_training
from bot.core.types import ChatPort, ChatUnreachable, OutgoingImage, Reply
from bot.store.schema import JobRow, JobStatus
from jobs.contract.events import Cancelled, Event, Failed, ImagesReady, Progress, Started, Trained
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import RenderMode

__all__ = ["EventPosts"]

log = logging.getLogger(__name__)


class EventPosts:
    """Posts events' meaning to chats, under the caller's hold of the user's lock."""

    def __init__(self, core: CoreContext) -> None:
        self.core = core

    async def apply(self, event: Event, job: JobRow, chat_id: str, port: ChatPort) -> None:
        """Post what ``event`` means for its job. A final event changes the job first and posts after, each post
        recorded once done: its redelivery (``delivery._ended_by``) posts only what is missing."""
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
            if not job.status.finished:
                await session.model_trained(self.core.store, job, event.lora_key)
                await forget_selfies_after_training(self.core, event.user_key, job.session_id)
            await self._final_text(event, job, chat_id, port, texts.TRAINING_FINISHED)
            # The first headshots come unasked where nothing stands in the way; the news says whether they come.
            first = await first_headshots_due(self.core, job)
            await self._once(event, "trained", lambda: port.send(chat_id, Reply(trained_text(first))))
            if first is not None:
                await self._once(
                    event, "first-headshots", lambda: queue_first_headshots(self.core, chat_id, first, port)
                )
        elif isinstance(event, ImagesReady):
            await self._post_images(event, job, chat_id, port)
        elif isinstance(event, Failed | Cancelled):
            await self._end_unsuccessfully(event, job, chat_id, port)

    async def _once(self, event: Event, part: str, post: Callable[[], Awaitable[object]]) -> None:
        """Post unless this event's ``part`` was posted already (a redelivery), then record it as posted."""
        mark = f"{event.event_id}/{part}"
        if event.event_id and await self.core.store.was_delivered(mark):
            return
        await post()
        if event.event_id:
            await self.core.store.mark_delivered(mark)

    async def _post_images(self, event: ImagesReady, job: JobRow, chat_id: str, port: ChatPort) -> None:
        """Each headshot its own message with its own buttons (★ Keep, More, Remix, Upscale), recorded as soon as
        it is posted (a failure at image k of n leaves 1..k-1 recorded, and the retry posts k..n only)."""
        store = self.core.store
        images = await store.images(event.user_key)
        if job.is_preview:
            current = await store.current_session(event.user_key)
            training = current is not None and current.state == session.SessionState.TRAINING
            ready = texts.PREVIEW_READY_TRAINING if training else texts.PREVIEW_READY
        else:
            ready = _ready_text(event, job, [row.storage_key for row in images])
        # What the image safety check withheld was never stored: said once, in the last word, and recorded nowhere.
        text = texts.withheld(ready, event.dropped, len(event.images), event.title)
        await self._final_text(event, job, chat_id, port, text)
        posted = {row.storage_key for row in images if row.job_id == job.job_id}
        first_number = len(images) - len(posted) + 1
        for index, item in enumerate(event.images):
            if item.key in posted:
                continue
            number = first_number + index
            image = OutgoingImage(
                filename=item.key.rsplit("/", 1)[-1],
                data=await self.core.storage.get(item.key),
                caption=texts.IMAGE_CAPTION.format(number=number, style=event.title, seed=item.seed),
            )
            message_id = await port.send_image(
                chat_id, image, texts.headshot_buttons(number, actions=not job.is_preview)
            )
            await store.add_image(event.user_key, job.job_id, item.key, item.seed, message_id)
        if not job.status.finished:
            await session.images_posted(store, job)

    async def _end_unsuccessfully(self, event: Failed | Cancelled, job: JobRow, chat_id: str, port: ChatPort) -> None:
        if isinstance(event, Failed):
            if not job.status.finished:
                await session.job_ended(self.core.store, job, JobStatus.FAILED)
            text = texts.explain(event.reason, event.params, job.kind)
            if job.is_preview and job.progress_message_id is None:  # the preview queued with a training
                text = texts.PREVIEW_FAILED_TRAINING
        else:
            await session.job_ended(self.core.store, job, JobStatus.CANCELLED)
            text = texts.CANCELLED_TRAINING if job.kind == JobKind.TRAIN else texts.CANCELLED_RENDERING
        await self._final_text(event, job, chat_id, port, text)

    async def _edit_progress(self, job: JobRow, chat_id: str, port: ChatPort, text: str) -> None:
        """Edit the job's progress message; a lost progress edit is not worth a retry (the next one comes)."""
        if job.progress_message_id is None:
            return
        try:
            await port.edit(chat_id, job.progress_message_id, Reply(text, (texts.CANCEL_BUTTON,)))
        except ChatUnreachable:
            raise  # nothing reaches this chat: the job is given up
        except Exception:
            log.warning("progress edit for job %s failed; skipped", job.job_id, exc_info=True)

    async def _final_text(self, event: Event, job: JobRow, chat_id: str, port: ChatPort, text: str) -> None:
        """The job's last word, in its progress message; when that edit fails (the message is gone), a fresh
        message, once per event: repeating an edit is harmless, a second fresh message is not."""
        reply = Reply(text)
        if job.progress_message_id is not None:
            try:
                await port.edit(chat_id, job.progress_message_id, reply, final=True)
                return
            except ChatUnreachable:
                raise
            except Exception:
                log.warning("final edit for job %s failed; sending it as a new message", job.job_id, exc_info=True)
        await self._once(event, "final", lambda: port.send(chat_id, reply))

    async def discard_outputs(self, event: ImagesReady) -> None:
        """Erase what ``event``'s job rendered: nobody will receive it."""
        keys = event.output_keys()
        for key in keys:
            await self.core.storage.delete(key)
        if keys:
            log.info("discarded %d outputs of job %s that nobody waits for", len(keys), event.job_id)


def _ready_text(event: ImagesReady, job: JobRow, keys: list[str]) -> str:
    """The job's last word: its style's headshots, or what an action made of headshot #n."""
    request = job.request
    if request is None or request.source_key is None or request.source_key not in keys:
        return texts.IMAGES_READY.format(style=event.title)  # a /headshot, or a source retention has since erased
    number = keys.index(request.source_key) + 1
    ready = {
        RenderMode.VARY: texts.VARIATIONS_READY,
        RenderMode.REMIX: texts.REMIXES_READY,
        RenderMode.UPSCALE: texts.UPSCALE_READY,
    }
    return ready.get(request.mode, texts.IMAGES_READY).format(number=number, style=event.title)
