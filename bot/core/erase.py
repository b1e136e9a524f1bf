"""``/delete confirm`` and its aftermath: every trace of a user goes, from files, Redis and the database.

Order matters: stop the work first (so no job writes after us), then files, then Redis, then the rows that told
us where everything was. A job that was running when the user left ends with one last event; delivery hands that
event to ``forget_event``, which erases what the job left behind (outputs, arq records, the event itself).
"""

from __future__ import annotations

import logging

from bot.core.context import CoreContext
from jobs.contract.erase import erase_finished_job, erase_user_traces
from jobs.contract.events import Event, Progress, Started
from jobs.contract.keys import user_prefix
from jobs.contract.payloads import job_owner

__all__ = ["erase_user", "forget_event"]

log = logging.getLogger(__name__)


async def erase_user(core: CoreContext, user_key: str) -> None:
    """Remove every row, blob, job record and event of ``user_key``."""
    # 1. Stop the work (a training and its preview can both be open): a queued job is simply removed below; a
    #    running one needs its abort request kept.
    running: tuple[str, ...] = ()
    for job in await core.store.open_jobs(user_key):
        if await core.queue.position(job.job_id) is None:
            running += (job.job_id,)
        await core.queue.request_abort(job.job_id)

    # 2. Files: selfies, LoRA weights and headshots all live under the user's prefix.
    files = await core.storage.delete_prefix(user_prefix(user_key))

    # 3. Redis: jobs, results, retries, aborts and the user's entries in the event stream.
    settings = core.settings
    event_ids = await erase_user_traces(
        core.queue.pool, user_key, queue_name=settings.queue_name, events_stream=settings.events_stream, spare=running
    )

    # 4. Rows last, and the delivery records of the events just deleted.
    await core.store.delete_user(user_key)
    await core.store.forget_deliveries(event_ids)
    core.selfie_status.close(user_key)
    log.info("erased a user: %d files, %d events, running job aborted: %s", files, len(event_ids), bool(running))


async def forget_event(core: CoreContext, event: Event) -> None:
    """An event of a user who is gone: delete its outputs, its job's arq records and the event itself."""
    prefix = user_prefix(event.user_key)
    # Only keys under the event's own user: an event can never make the bot delete someone else's files.
    keys = [key for key in event.output_keys() if key.startswith(prefix)]
    for key in keys:
        await core.storage.delete(key)
    # A job's last event (not its progress) is followed by arq's record of its end: erase that once written.
    if job_owner(event.job_id) == event.user_key and not isinstance(event, Started | Progress):
        await erase_finished_job(core.queue.pool, event.job_id, queue_name=core.settings.queue_name)
    if event.event_id is not None:
        await core.queue.pool.xdel(core.settings.events_stream, event.event_id)
    log.info("discarded %d outputs of a job whose user was erased", len(keys))
