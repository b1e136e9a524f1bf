"""Worker -> bot events: one frozen dataclass per event type, carried on a Redis Stream (at-least-once).

On the stream an event is four fields: ``type``, ``user_key``, ``job_id`` and ``data``, the JSON of the event's own
fields. The bot's consumer group reads them (``EventConsumer``); the bot acks an event only after the chat call
succeeded; events left pending by a bot that died are read again by the same consumer name on restart and claimed by
any other consumer once idle long enough.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from jobs.contract.kinds import JobKind
from pipeline.errors import Reason

__all__ = [
    "Cancelled",
    "Event",
    "EventType",
    "Expired",
    "Failed",
    "ImagesReady",
    "Progress",
    "RenderedImage",
    "Started",
    "Trained",
    "event_from_fields",
]


class EventType(StrEnum):
    STARTED = "started"
    PROGRESS = "progress"
    TRAINED = "trained"
    IMAGES_READY = "images_ready"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True, kw_only=True)
class Event:
    """One message from a worker about one job of one user. ``event_id`` is the stream id once published."""

    type: ClassVar[EventType]
    user_key: str
    job_id: str
    event_id: str | None = None

    def output_keys(self) -> tuple[str, ...]:
        """The storage keys of what the job made that this event hands over (headshots, a LoRA)."""
        return ()

    def to_fields(self) -> dict[str, str]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _ENVELOPE}
        return {
            "type": self.type.value,
            "user_key": self.user_key,
            "job_id": self.job_id,
            "data": json.dumps(data, default=_jsonable),
        }


@dataclass(frozen=True, kw_only=True)
class Started(Event):
    """A worker began the job; ``try_number`` > 1 means an earlier run died and this one starts over."""

    type: ClassVar[EventType] = EventType.STARTED
    kind: JobKind
    worker: str
    try_number: int = 1


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    """``done`` of ``total`` (training: image-steps; rendering: headshots), with an estimate of the time left."""

    type: ClassVar[EventType] = EventType.PROGRESS
    done: int
    total: int
    eta_s: float | None = None
    loss: float | None = None


@dataclass(frozen=True, kw_only=True)
class Trained(Event):
    type: ClassVar[EventType] = EventType.TRAINED
    lora_key: str
    seconds: float | None = None
    final_loss: float | None = None

    def output_keys(self) -> tuple[str, ...]:
        return (self.lora_key,)


@dataclass(frozen=True)
class RenderedImage:
    """One stored headshot: its storage key, seed, and likeness to the user's selfies (None: no face scored)."""

    key: str
    seed: int
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class ImagesReady(Event):
    """The job's headshots, best likeness first; ``style`` is the preset name or ``custom``, ``title`` its title;
    ``dropped`` renders the image safety check withheld (never stored; 0 in events from before the check)."""

    type: ClassVar[EventType] = EventType.IMAGES_READY
    style: str
    title: str
    images: tuple[RenderedImage, ...]
    dropped: int = 0

    def output_keys(self) -> tuple[str, ...]:
        return tuple(image.key for image in self.images)


@dataclass(frozen=True, kw_only=True)
class Failed(Event):
    """The job ended without a result; ``reason`` and ``params`` are rendered for the user by the bot's texts."""

    type: ClassVar[EventType] = EventType.FAILED
    kind: JobKind
    reason: Reason
    params: dict[str, str | int | float] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Cancelled(Event):
    """The user's ``/cancel`` stopped the job."""

    type: ClassVar[EventType] = EventType.CANCELLED
    kind: JobKind


@dataclass(frozen=True, kw_only=True)
class Expired(Event):
    """The retention cron job deleted a user's blobs older than ``days`` days; ``keys`` lists them."""

    type: ClassVar[EventType] = EventType.EXPIRED
    keys: tuple[str, ...]
    days: int


_ENVELOPE = frozenset({"user_key", "job_id", "event_id"})
_CLASSES: dict[EventType, type[Event]] = {
    cls.type: cls for cls in (Started, Progress, Trained, ImagesReady, Failed, Cancelled, Expired)
}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def event_from_fields(event_id: str, fields: dict[str, str]) -> Event:
    """The typed event a stream entry holds; ValueError names the type or field that does not fit."""
    event_type = EventType(fields["type"])
    cls = _CLASSES[event_type]
    data = json.loads(fields.get("data") or "{}")
    if cls is ImagesReady:
        data["images"] = tuple(RenderedImage(**image) for image in data.get("images", ()))
    elif cls is Expired:
        data["keys"] = tuple(data.get("keys", ()))
    if "kind" in data:
        data["kind"] = JobKind(data["kind"])
    if "reason" in data:
        data["reason"] = Reason(data["reason"])
    try:
        return cls(user_key=fields["user_key"], job_id=fields["job_id"], event_id=event_id, **data)
    except TypeError as error:
        raise ValueError(f"{event_type} event {event_id} does not fit {cls.__name__}: {error}") from error
