"""The bot's half of retention: selfies go once a model is trained; expired blobs' rows follow the storage.

The worker's cron job (``jobs.worker.retention``) deletes old blobs and sends one ``expired`` event per user; here the
database forgets what was deleted, and the user hears that their model and headshots were erased as promised.
"""

from __future__ import annotations

import logging

from bot.core import session, texts
from bot.core.context import CoreContext
from bot.core.types import ChatPort, Reply
from jobs.contract.events import Expired
from jobs.contract.keys import user_prefix

__all__ = ["forget_expired", "forget_selfies_after_training"]

log = logging.getLogger(__name__)


async def forget_selfies_after_training(core: CoreContext, user_key: str, session_id: int) -> None:
    """With ``delete_selfies_after_training``: the model holds what training needed, so the photos go."""
    if not core.settings.delete_selfies_after_training:
        return
    keys = await core.store.selfie_keys(user_key, session_id)
    for key in keys:
        await core.storage.delete(key)
    await core.store.forget_selfies(user_key, session_id)


async def forget_expired(core: CoreContext, event: Expired, chat_id: str | None, port: ChatPort) -> None:
    """Drop the rows of the blobs an ``expired`` event lists; tell the user when a model or headshots went."""
    prefix = user_prefix(event.user_key)
    # Only the event's own user's keys: a row of another user can never be touched through someone's event.
    keys = [key for key in event.keys if key.startswith(prefix)]
    models, images = await session.models_expired(core.store, event.user_key, keys)
    log.info("retention: %d blobs expired, %d models and %d headshots forgotten", len(keys), models, images)
    if chat_id is not None and (models or images):
        await port.send(chat_id, Reply(texts.RETENTION_EXPIRED.format(days=event.days)))
