"""No job goes unheard of: a job that sends no event for ``job_silence_s`` gets a word to its user.

Running jobs send progress every few seconds, queued ones nothing until they start, so silence means a long queue,
a stuck or dead worker, or a queue that lost the job (Redis restarted without its data). Every ``job_silence_s / 4``
the watchdog looks at each open job the bot last heard of more than ``job_silence_s`` ago and asks arq where it is:

- queued: "still in the queue (position n)"; in progress: "still working on it"; both repeat at most once per bound;
- finished, but its final event never came: delivered from arq's stored result, as the event would have been;
- failed without a word, or unknown to the queue: the user is told in plain words and the session is freed.

So the longest a user waits without a message is ``job_silence_s`` plus a quarter of it. Times are kept in memory:
after a bot restart every open job gets a full bound again from the first round. Each job is checked on its own:
one job's failure never ends the round, and a chat that refuses for good (the user blocked the bot) ends its job as
undeliverable, as delivery does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from arq.jobs import Job, JobStatus
from redis.exceptions import RedisError

from bot.core import texts
from bot.core.types import Reply, Undeliverable
from bot.store.schema import JobRow
from jobs.contract.events import Event, Failed, ImagesReady, RenderedImage, Trained
from jobs.contract.kinds import JobKind
from pipeline.errors import Reason

if TYPE_CHECKING:
    from bot.core.context import CoreContext
    from bot.core.delivery import EventDelivery

__all__ = ["JobWatchdog"]

log = logging.getLogger(__name__)

_WHAT = {JobKind.TRAIN: "training", JobKind.GENERATE: "headshots"}


class JobWatchdog:
    def __init__(self, core: CoreContext, delivery: EventDelivery) -> None:
        self.core = core
        self.delivery = delivery

    async def run(self, stop: asyncio.Event) -> None:
        """Check every quarter of the silence bound until ``stop`` is set; a failed round is tried next time."""
        interval = self.core.settings.job_silence_s / 4
        while not stop.is_set():
            try:
                await self.check_once()
            except (RedisError, OSError):
                log.warning("the job watchdog's round failed (Redis away?); trying again in %.0f s", interval)
            except Exception:
                log.exception("the job watchdog's round failed; trying again in %.0f s", interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def check_once(self) -> int:
        """One round over the open jobs; returns how many users were told something."""
        heartbeats = self.core.heartbeats
        bound = self.core.settings.job_silence_s
        jobs = await self.core.store.open_jobs()
        heartbeats.forget({job.job_id for job in jobs})
        told = 0
        for job in jobs:
            silent = heartbeats.silent_for(job.job_id)
            if silent is None:
                heartbeats.heard(job.job_id)  # first sight (or a fresh bot): the bound starts now
            elif silent >= bound:
                told += await self._check_one(job, silent)
                heartbeats.heard(job.job_id)  # checked or not, its next turn is a bound away
        return told

    async def _check_one(self, job: JobRow, silent_s: float) -> int:
        """Check one job, whatever goes wrong: 1 when its user was told something."""
        try:
            await self._check(job, silent_s)
            return 1
        except Undeliverable as error:
            try:
                await self.delivery.give_up(job, error)
            except Exception:
                log.exception("giving up job %s failed; the next round tries again", job.job_id)
        except (RedisError, OSError):
            log.warning("checking job %s failed (Redis away?); the next round tries again", job.job_id, exc_info=True)
        except Exception:
            log.exception("checking job %s failed; the next round tries again", job.job_id)
        return 0

    async def _check(self, job: JobRow, silent_s: float) -> None:
        port = self.delivery.ports.get(job.user_key.split(":", 1)[0])
        chat_id = await self.core.store.chat_of(job.user_key)
        if port is None or chat_id is None:
            return
        queue = self.core.queue
        what = _WHAT.get(job.kind, job.kind)
        status = await queue.status(job.job_id)
        log.info("job %s silent for %.0f s; queue says %s", job.job_id, silent_s, status.value)
        if status in (JobStatus.queued, JobStatus.deferred):
            position = await queue.position(job.job_id)
            text = texts.STILL_QUEUED if position else texts.STILL_WAITING
            await port.send(chat_id, Reply(text.format(what=what, position=position), (texts.CANCEL_BUTTON,)))
        elif status == JobStatus.in_progress:
            minutes = max(1, round(silent_s / 60))
            await port.send(chat_id, Reply(texts.STILL_RUNNING.format(what=what, minutes=minutes)))
        else:
            await self.delivery.deliver(await self._final_event(job, status))

    async def _final_event(self, job: JobRow, status: JobStatus) -> Event:
        """The event the bot should have had: rebuilt from arq's result, or a failure the user can read."""
        info = None
        if status == JobStatus.complete:
            info = await Job(job.job_id, self.core.queue.pool, _queue_name=self.core.queue.queue_name).result_info()
        result = info.result if info is not None and info.success and isinstance(info.result, dict) else {}
        if job.kind == JobKind.TRAIN and "lora_key" in result:
            return Trained(user_key=job.user_key, job_id=job.job_id, lora_key=result["lora_key"])
        if job.kind == JobKind.GENERATE and "images" in result:
            style = result.get("style") or job.style or ""
            images = tuple(RenderedImage(**image) for image in result["images"])
            title = result.get("title") or style
            dropped = int(result.get("dropped", 0))
            return ImagesReady(
                user_key=job.user_key, job_id=job.job_id, style=style, title=title, images=images, dropped=dropped
            )
        return Failed(user_key=job.user_key, job_id=job.job_id, kind=job.kind, reason=Reason.JOB_LOST)
