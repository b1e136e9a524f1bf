"""The first headshots: when a user's model is trained, a set in the previews' style comes without a ``/headshot``.

Every headshot service shows its first results unasked; the user picks other looks after. Delivery of the worker's
``Trained`` event queues them, under the user's lock, through ``/headshot``'s own path (the daily image quota, the
session's next job id, the acknowledgement that progress edits), so they are a render like any other: ``/cancel``,
numbered headshots, buttons. Never twice for one model: delivery records them once per event, and a session that
has any render of its model already (these, after a crash lost that record, or the user's own) gets none.
"""

from __future__ import annotations

import logging

from bot.core import texts
from bot.core.context import CoreContext
from bot.core.previews import PREVIEW_STYLE
from bot.core.rendering import render_headshots
from bot.core.session import SessionState
from bot.core.types import ChatPort, ChatRef
from bot.store.schema import JobRow, SessionRow
from jobs.contract.kinds import JobKind
from pipeline.errors import SessionError
from pipeline.styles import STYLES

__all__ = ["first_headshots_due", "queue_first_headshots", "trained_text"]

log = logging.getLogger(__name__)

FIRST_STYLE = STYLES[PREVIEW_STYLE]  # the look most users come for, as the previews'


async def first_headshots_due(core: CoreContext, training: JobRow) -> SessionRow | None:
    """The session whose first headshots ``training`` (just delivered as trained) should bring, or None: they are
    off, the session is not the user's current one or not READY, a render is open or was ever queued with this
    model, or today's image quota has no room for them."""
    count = core.settings.first_headshots
    if count == 0 or training.kind != JobKind.TRAIN:
        return None
    store = core.store
    session = await store.current_session(training.user_key)
    if session is None or session.id != training.session_id or session.state != SessionState.READY:
        return None  # a late redelivery: the user has moved on (a new session, a render of their own)
    if session.lora_key is None or await store.open_jobs(training.user_key):
        return None  # a preview from the selfies still renders (FLUX.2 [klein]): the user waits on that one
    renders = await store.session_jobs(training.user_key, session.id, JobKind.GENERATE)
    if any(not job.is_preview for job in renders):
        return None  # queued already (this event again, delivered before its record was kept) or asked for since
    try:
        await core.quotas.check_images(training.user_key, count)
    except SessionError:  # the refusal is for what the user asks; the model is theirs to use tomorrow
        log.info("no first headshots: today's image quota has no room for %d", count)
        return None
    return session


def trained_text(first: SessionRow | None) -> str:
    """The "model is ready" news, saying whether the first headshots come with it."""
    return texts.TRAINED if first is None else texts.TRAINED_FIRST_HEADSHOTS.format(style=FIRST_STYLE.title)


async def queue_first_headshots(core: CoreContext, chat_id: str, session: SessionRow, port: ChatPort) -> None:
    """Queue ``settings.first_headshots`` headshots of ``session`` as ``/headshot linkedin`` would."""
    platform, user_id = session.user_key.split(":", 1)
    chat = ChatRef(platform, user_id, chat_id)
    await render_headshots(core, chat, session, FIRST_STYLE, port, count=core.settings.first_headshots)
