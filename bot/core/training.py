"""Selfie intake and the start of training: the COLLECTING -> TRAINING half of the session."""

from __future__ import annotations

import logging

from bot.core import session as transitions
from bot.core import texts
from bot.core.context import CoreContext
from bot.core.previews import preview_on_training, store_identity
from bot.core.session import SessionState
from bot.core.types import Attachment, ChatPort, ChatRef, Reply
from bot.store.schema import SelfieRow, SessionRow
from jobs.contract.keys import lora_key, selfie_key
from jobs.contract.payloads import TrainRequest, train_job_id
from pipeline.errors import SelfieRejected, SessionError
from pipeline.selfies.intake import IntakeRules

__all__ = ["add_selfies", "start_training"]

log = logging.getLogger(__name__)


async def add_selfies(
    core: CoreContext, chat: ChatRef, session: SessionRow, attachments: tuple[Attachment, ...], port: ChatPort
) -> None:
    """Check each attachment, keep the good ones, and show one verdict per file plus the running count.

    The verdicts go into the run's one status message (``SelfieStatus``), edited as more photos arrive.
    """
    settings = core.settings
    rows = await core.store.selfies(chat.user_key, session.id)
    keys = [row.storage_key for row in rows]
    accepted = [row.facts for row in rows if row.facts is not None]
    rules = IntakeRules(
        settings.min_face_px, settings.min_face_sharpness, settings.duplicate_max_distance, settings.identity_min_score
    )
    lines: list[str] = []
    numbered = core.selfie_status.verdicts(chat.user_key, session.id)
    room = max(0, settings.max_selfies - len(keys))
    if room:
        # Checks queue for the selfie check processes (a fraction of a second each, longer in a burst): say at once
        # that the photos arrived; the verdicts replace this line.
        checking = texts.selfie_checking(min(room, len(attachments)))
        await core.selfie_status.show(port, chat, session.id, [], checking, ())
    for attachment in attachments:
        # Photos without a file name (Telegram's compressed photos) are numbered in the order they arrived.
        name = texts.clip(attachment.filename) if attachment.filename else f"photo {numbered + len(lines) + 1}"
        if len(keys) >= settings.max_selfies:
            lines.append(
                texts.SELFIE_REJECTED.format(
                    filename=name, reason=texts.SELFIE_LIMIT.format(maximum=settings.max_selfies)
                )
            )
            continue
        try:
            checked = await core.selfie_checks.inspect(
                attachment.data, accepted, rules, min_side=settings.min_selfie_side
            )
        except SelfieRejected as rejection:
            lines.append(texts.SELFIE_REJECTED.format(filename=name, reason=texts.explain(rejection)))
            continue
        selfie = checked.selfie
        key = selfie_key(chat.user_key, session.id, len(keys) + 1)
        await core.storage.put(key, selfie.jpeg)
        await core.store.add_selfie(chat.user_key, session.id, key, selfie.width, selfie.height, checked.facts)
        keys.append(key)
        accepted.append(checked.facts)
        lines.append(texts.SELFIE_ACCEPTED.format(filename=name))
    footer = texts.selfie_count_line(len(keys), settings.min_selfies, settings.max_selfies)
    buttons = (texts.START_BUTTON,) if len(keys) >= settings.min_selfies else ()
    await core.selfie_status.show(port, chat, session.id, lines, footer, buttons)


async def start_training(core: CoreContext, chat: ChatRef, session: SessionRow | None, port: ChatPort) -> None:
    """``/train start``: enqueue the session's training job once, and post the message that progress will edit."""
    settings = core.settings
    # 1. Check the session can train.
    if session is None or session.state == SessionState.NEW:
        raise SessionError(texts.TRAIN_NO_SELFIES.format(needed=settings.min_selfies, maximum=settings.max_selfies))
    if session.state == SessionState.TRAINING:
        raise SessionError(texts.TRAIN_ALREADY_RUNNING)
    if session.state.has_model:
        raise SessionError(texts.TRAIN_ALREADY_DONE)
    rows = await core.store.selfies(chat.user_key, session.id)
    keys = [row.storage_key for row in rows]
    if not keys:
        raise SessionError(texts.TRAIN_NO_SELFIES.format(needed=settings.min_selfies, maximum=settings.max_selfies))
    if len(keys) < settings.min_selfies:
        raise SessionError(
            texts.TRAIN_NOT_ENOUGH.format(
                count=len(keys), needed=settings.min_selfies, missing=settings.min_selfies - len(keys)
            )
        )

    await core.quotas.check_training(chat.user_key)

    # 2. The worker crops around each face, and ranks headshots by likeness to the reference stored beside the LoRA;
    #    the previews from the selfies (on a model that renders them) go just ahead of the training.
    await store_identity(core, chat, session, rows)
    await preview_on_training(core, chat, session, rows)
    # 3. Record the job and the state before enqueueing, so no event can arrive for a job the bot does not know.
    job_id = train_job_id(chat.user_key, session.id, session.train_attempt)
    await transitions.training_queued(core.store, session, job_id)
    lora = lora_key(chat.user_key, session.id)
    request = TrainRequest(
        chat.user_key,
        session.id,
        keys,
        lora,
        seed=session.id,
        crop_centers=_face_centers(rows),
        subject=session.subject,
    )
    if not await core.queue.enqueue_training(job_id, request):
        # The deterministic id already sits in Redis: this is a repeat of a request already queued.
        log.info("training job %s was already enqueued", job_id)
        raise SessionError(texts.TRAIN_ALREADY_RUNNING)

    # 4. Acknowledge at once; this message is the one progress events edit.
    position = await core.queue.position(job_id)
    text = texts.TRAIN_QUEUED.format(position=position) if position else texts.TRAIN_QUEUED_RUNNING
    message_id = await port.send(chat.chat_id, Reply(text, (texts.CANCEL_BUTTON,)))
    await core.store.update_job(chat.user_key, job_id, progress_message_id=message_id)


def _face_centers(rows: list[SelfieRow]) -> list[list[float]] | None:
    """Each selfie's face centre (fractions of its size), or None when any selfie predates the face checks."""
    centers = [list(row.facts.face_center(row.width, row.height)) for row in rows if row.facts is not None]
    return centers if len(centers) == len(rows) else None
