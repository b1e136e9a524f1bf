"""Daily quotas an operator sets (``HEADSHOT_DAILY_TRAININGS``, ``HEADSHOT_DAILY_IMAGES``): checked before a job is
recorded, so a refused request leaves nothing behind; counted from the store's rows per UTC day. ``/delete`` keeps
today's two counts (``carry_over``, no content, gone with the day), or erasing would reset the quotas."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from bot.core import texts
from bot.store.database import Store
from jobs.settings import Settings
from pipeline.errors import SessionError

__all__ = ["Quotas", "Usage"]


@dataclass(frozen=True)
class Usage:
    """What a user used today and the limits (0: none), and how long until they reset."""

    trainings: int
    images: int
    training_limit: int
    image_limit: int
    resets_in_s: float

    def lines(self) -> list[str]:
        """``/status``'s lines, one per quota that is on."""
        lines = []
        if self.training_limit:
            left = max(0, self.training_limit - self.trainings)
            lines.append(texts.QUOTA_LEFT.format(left=left, limit=self.training_limit, what="trainings"))
        if self.image_limit:
            left = max(0, self.image_limit - self.images)
            lines.append(texts.QUOTA_LEFT.format(left=left, limit=self.image_limit, what="headshots"))
        if lines:
            lines.append(texts.QUOTA_RESETS.format(when=texts.format_wait(self.resets_in_s)))
        return lines


class Quotas:
    """``clock`` gives the time (``time.time``); tests hand in another to move to the next day."""

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock

    def _midnight(self) -> tuple[dt.datetime, dt.datetime]:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        return now, now.replace(hour=0, minute=0, second=0, microsecond=0)

    async def carry_over(self, user_key: str) -> None:
        """Before ``/delete`` erases the rows the counts come from: keep today's counts."""
        _, midnight = self._midnight()
        await self.store.carry_usage(user_key, midnight.timestamp())

    async def usage(self, user_key: str) -> Usage:
        now, midnight = self._midnight()
        trainings, images = await self.store.usage_since(user_key, midnight.timestamp())
        resets_in = (midnight + dt.timedelta(days=1) - now).total_seconds()
        return Usage(trainings, images, self.settings.daily_trainings, self.settings.daily_images, resets_in)

    async def check_training(self, user_key: str) -> None:
        """Raise the refusal when the user has started as many trainings today as the operator allows."""
        usage = await self.usage(user_key)
        if usage.training_limit and usage.trainings >= usage.training_limit:
            raise SessionError(
                texts.QUOTA_TRAININGS.format(limit=usage.training_limit, when=texts.format_wait(usage.resets_in_s))
            )

    async def check_images(self, user_key: str, count: int) -> None:
        """Raise the refusal when ``count`` more headshots would pass today's limit."""
        usage = await self.usage(user_key)
        if usage.image_limit and usage.images + count > usage.image_limit:
            left = max(0, usage.image_limit - usage.images)
            raise SessionError(
                texts.QUOTA_IMAGES.format(
                    limit=usage.image_limit, left=left, count=count, when=texts.format_wait(usage.resets_in_s)
                )
            )
