"""Previews: headshots rendered straight from the user's selfies, before (or without) any training.

A worker whose model reads reference photos (FLUX.2 [klein]) says so in its heartbeat (``WorkerFeature``); only then
does the bot ask for previews, so an SDXL deployment never queues a job it would refuse. Two ways in:
- ``/train start`` queues ``settings.preview_count`` previews in a preset style just ahead of the training, so the
  user sees a first look within one render's time while the LoRA trains;
- ``/headshot <style>`` before a model exists renders the style from the selfies (it counts against the daily
  image quota, as any render).
A preview is a generation job like any other (progress, ``/cancel``, ranking against the selfies' face, outputs
under the user's prefix, erased by ``/delete``), except that it leaves the session's state alone: training goes on
beside it, and collecting selfies goes on after it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

from bot.core import texts
from bot.core.context import CoreContext
from bot.core.rendering import queue_render
from bot.core.session import SessionState, state_of
from bot.core.types import ChatPort, ChatRef, Reply
from bot.store.schema import SelfieRow, SessionRow
from jobs.contract.keys import identity_key, lora_key
from jobs.contract.payloads import PREVIEW_REFERENCES, RenderMode
from jobs.ops.health import WorkerFeature, offered
from pipeline.errors import SessionError
from pipeline.selfies.identity import cosine, reference_embedding
from pipeline.styles import STYLES, Style

__all__ = ["PREVIEW_STYLE", "preview_session", "preview_on_training", "render_from_selfies", "store_identity"]

log = logging.getLogger(__name__)

PREVIEW_STYLE = "linkedin"  # the look of the automatic previews: the one most users come for


async def preview_session(core: CoreContext, session: SessionRow | None) -> SessionRow | None:
    """``session`` when it can have previews now (they are on, it has selfies and no model, and a worker offers
    them), else None."""
    if core.settings.preview_count == 0 or session is None or session.lora_key is not None:
        return None
    if state_of(session) not in (SessionState.COLLECTING, SessionState.TRAINING):
        return None
    return session if await offered(core.queue.pool, core.settings.queue_name, WorkerFeature.REFERENCES) else None


async def store_identity(core: CoreContext, chat: ChatRef, session: SessionRow, rows: list[SelfieRow]) -> None:
    """The selfies' reference face, beside where the LoRA will be: what the worker ranks every render against."""
    embeddings = [row.facts.embedding for row in rows if row.facts is not None]
    if embeddings:
        reference = reference_embedding(embeddings).tolist()
        await core.storage.put(
            identity_key(lora_key(chat.user_key, session.id)), json.dumps({"embedding": reference}).encode()
        )


async def preview_on_training(core: CoreContext, chat: ChatRef, session: SessionRow, rows: list[SelfieRow]) -> None:
    """``/train start``: queue the previews (ahead of the training, which the caller queues next) where a worker
    renders them and today's image quota has room; otherwise nothing, quietly: the trained headshots still come."""
    if await preview_session(core, session) is None:
        return
    try:
        await _queue(core, chat, session, rows, STYLES[PREVIEW_STYLE], core.settings.preview_count)
    except SessionError:  # today's images are used up: the refusal is for what the user asks, not for this
        return


async def render_from_selfies(
    core: CoreContext, chat: ChatRef, session: SessionRow, style: Style, port: ChatPort
) -> None:
    """``/headshot <style>`` with no model yet: the style rendered from the selfies, acknowledged by the message
    that progress edits."""
    for job in await core.store.open_jobs(chat.user_key):
        if job.is_preview:
            raise SessionError(texts.HEADSHOT_BUSY.format(style=job.style or "last"))
    rows = [row for row in await core.store.selfies(chat.user_key, session.id) if row.facts is not None]
    if not rows:
        raise SessionError(texts.HEADSHOT_NEEDS_MODEL)
    count = core.settings.headshots_per_request
    await core.quotas.check_images(chat.user_key, count)  # before the identity is written: a refusal leaves nothing
    if session.state == SessionState.COLLECTING:  # at /train start it is stored anyway
        await store_identity(core, chat, session, rows)
    job_id, position = await _queue(core, chat, session, rows, style, count)
    queue = texts.QUEUE_POSITION.format(position=position) if position else ""
    text = texts.PREVIEW_QUEUED.format(count=count, style=style.title, queue=queue)
    message_id = await port.send(chat.chat_id, Reply(text, (texts.CANCEL_BUTTON,)))
    await core.store.update_job(chat.user_key, job_id, progress_message_id=message_id)


async def _queue(
    core: CoreContext, chat: ChatRef, session: SessionRow, rows: list[SelfieRow], style: Style, count: int
) -> tuple[str, int | None]:
    """Record, then enqueue, a preview of ``style`` from the selfies most like the user's reference face."""
    picked = _most_typical(rows)[:PREVIEW_REFERENCES]
    titled = replace(style, title=texts.PREVIEW_TITLE.format(title=style.title))
    job_id, position = await queue_render(
        core,
        chat,
        session,
        titled,
        count=count,
        mode=RenderMode.PREVIEW,
        reference_keys=tuple(row.storage_key for row in picked),
        reference_centers=tuple(_center(row) for row in picked),
    )
    log.info("queued a preview from %d selfies", len(picked))
    return job_id, position


def _most_typical(rows: list[SelfieRow]) -> list[SelfieRow]:
    """Checked selfies, the ones most like the user's reference face first: the clearest look at the usual face."""
    checked = [row for row in rows if row.facts is not None]
    if not checked:
        return []
    reference = reference_embedding([row.facts.embedding for row in checked if row.facts is not None])
    return sorted(checked, key=lambda row: -cosine(row.facts.embedding, reference) if row.facts else 0.0)


def _center(row: SelfieRow) -> tuple[float, float]:
    assert row.facts is not None  # _most_typical keeps checked selfies only
    return row.facts.face_center(row.width, row.height)
