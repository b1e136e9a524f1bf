"""Rendering commands: ``/headshot``'s queueing (the first headshots' after training too), and the actions on one
headshot (``/more``, ``/remix``, ``/upscale``).

An action is a generation job like any other (same job ids, progress, ``/cancel``, delivery as numbered headshots,
outputs under the user's prefix), whose request names the headshot it starts from and a ``RenderMode``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from bot.core import session as transitions
from bot.core import texts
from bot.core.context import CoreContext
from bot.core.session import SessionState, state_of
from bot.core.types import ChatPort, ChatRef, Reply
from bot.store.schema import SessionRow
from jobs.contract.keys import lora_key, output_prefix
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import GenerateRequest, RenderMode, generate_job_id
from pipeline.errors import SessionError, UnknownStyle
from pipeline.safety.text import check_words
from pipeline.styles import STYLES, Style, remix_style, resolve_style

__all__ = ["ACTIONS", "check_can_render", "queue_render", "render_headshots", "start_action"]

# The command of each action, and the mode its request carries.
ACTIONS = {"/more": RenderMode.VARY, "/remix": RenderMode.REMIX, "/upscale": RenderMode.UPSCALE}
_QUEUED = {
    RenderMode.VARY: texts.MORE_QUEUED,
    RenderMode.REMIX: texts.REMIX_QUEUED,
    RenderMode.UPSCALE: texts.UPSCALE_QUEUED,
}


async def check_can_render(
    core: CoreContext, chat: ChatRef, session: SessionRow | None, busy: Callable[[str], str]
) -> SessionRow:
    """The session, when it has a model and no render running; else the refusal (``busy(style)`` when one runs)."""
    state = state_of(session)
    if state == SessionState.TRAINING:  # before the model check: a training session has no model yet
        raise SessionError(texts.HEADSHOT_WHILE_TRAINING)
    if session is None or state in (SessionState.NEW, SessionState.COLLECTING) or session.lora_key is None:
        raise SessionError(texts.HEADSHOT_NEEDS_MODEL)
    if state == SessionState.GENERATING:
        active = await core.store.active_job(chat.user_key)
        raise SessionError(busy((active.style or "last") if active else "last"))
    return session


async def queue_render(
    core: CoreContext,
    chat: ChatRef,
    session: SessionRow,
    style: Style,
    *,
    count: int,
    mode: RenderMode = RenderMode.PROMPT,
    source_key: str | None = None,
    reference_keys: tuple[str, ...] = (),
    reference_centers: tuple[tuple[float, float], ...] | None = None,
) -> tuple[str, int | None]:
    """Record, then enqueue, a generation job; returns its id and queue position (None: it runs next). A preview
    (``reference_keys``: the selfies it renders from) names where the LoRA will be: the reference face is kept there."""
    assert session.lora_key is not None or mode == RenderMode.PREVIEW  # check_can_render made sure
    number = await core.store.count_jobs(chat.user_key, session.id, JobKind.GENERATE) + 1
    request_id = f"{session.id}-{number}"
    job_id = generate_job_id(chat.user_key, request_id)
    await core.quotas.check_images(chat.user_key, count)  # before anything is recorded, as for /train
    request = GenerateRequest(
        user_key=chat.user_key,
        request_id=request_id,
        lora_key=session.lora_key or lora_key(chat.user_key, session.id),
        style=style,
        count=count,
        seed=secrets.randbelow(2**31),
        output_prefix=output_prefix(chat.user_key, request_id),
        subject=session.subject,
        mode=mode,
        source_key=source_key,
        reference_keys=reference_keys,
        reference_centers=reference_centers,
    )
    await transitions.rendering_queued(core.store, session, job_id, request)
    await core.queue.enqueue_generation(job_id, request)
    return job_id, await core.queue.position(job_id)


async def render_headshots(
    core: CoreContext, chat: ChatRef, session: SessionRow, style: Style, port: ChatPort, *, count: int
) -> None:
    """``/headshot <style>`` once the checks passed: record, then enqueue, then acknowledge (the acknowledgement is
    the message progress edits)."""
    job_id, position = await queue_render(core, chat, session, style, count=count)
    text = (texts.HEADSHOT_QUEUED if position else texts.HEADSHOT_QUEUED_RUNNING).format(
        count=count, style=style.title, position=position
    )
    message_id = await port.send(chat.chat_id, Reply(text, (texts.CANCEL_BUTTON,)))
    await core.store.update_job(chat.user_key, job_id, progress_message_id=message_id)


async def start_action(
    core: CoreContext, chat: ChatRef, session: SessionRow | None, command: str, args: str, port: ChatPort
) -> None:
    """``/more <n>``, ``/remix <n> <words>``, ``/upscale <n>``: render from headshot #n."""
    mode, action = ACTIONS[command], command.lstrip("/")
    # 1. Check inputs: (remix) words the safety screen takes, first, so they get the same answer in every state; a
    # model and no render running; a headshot of that number; (remix) some words at all.
    given, _, words = args.partition(" ")
    if mode == RenderMode.REMIX:
        check_words(words)
    session = await check_can_render(core, chat, session, lambda _: texts.ACTION_BUSY.format(action=action))
    images = await core.store.images(chat.user_key)
    number = given.lstrip("#")
    if not images:
        raise SessionError(texts.ACTION_NO_HEADSHOTS)
    if not number.isdecimal() or not 1 <= int(number) <= len(images):
        raise SessionError(
            texts.ACTION_NO_SUCH.format(number=texts.clip(given) or "?", count=len(images), action=action)
        )
    if mode == RenderMode.REMIX and not words.strip():
        raise SessionError(texts.REMIX_NEEDS_WORDS.format(number=number))

    # 2. The style the headshot was made in; a remix adds the user's words to it (checked as free-text styles are).
    source = images[int(number) - 1]
    source_style = await _style_of(core, chat, source.job_id)
    style = source_style
    if mode == RenderMode.REMIX:
        style = remix_style(source_style, words, texts.REMIX_TITLE.format(title=source_style.title))

    # 3. Queue it; the acknowledgement is the message progress edits.
    count = 1 if mode == RenderMode.UPSCALE else core.settings.headshots_per_request
    job_id, position = await queue_render(
        core, chat, session, style, count=count, mode=mode, source_key=source.storage_key
    )
    queue = texts.QUEUE_POSITION.format(position=position) if position else ""
    text = _QUEUED[mode].format(number=int(number), count=count, queue=queue)
    message_id = await port.send(chat.chat_id, Reply(text, (texts.CANCEL_BUTTON,)))
    await core.store.update_job(chat.user_key, job_id, progress_message_id=message_id)


async def _style_of(core: CoreContext, chat: ChatRef, job_id: str) -> Style:
    """The style a job rendered in, from its stored request; a job stored before requests were kept is found by
    its preset name (a free-text look of that time is gone: LinkedIn's stands in)."""
    job = await core.store.job(chat.user_key, job_id)
    if job is not None and job.request is not None:
        return job.request.style
    try:
        return resolve_style(job.style or "") if job is not None else STYLES["linkedin"]
    except UnknownStyle:
        return STYLES["linkedin"]
