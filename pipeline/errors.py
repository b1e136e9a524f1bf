"""Every error the product raises on purpose, drawn in one place, at the lowest layer so every layer can use it.

    HeadshotError               carries a ``Reason`` code and its parameters; ``bot/core/texts.py`` renders them
    ├── UserInputError          the user can fix it
    │   ├── SelfieRejected      a photo that cannot be used (not an image, truncated, no face, blurry, ...)
    │   ├── UnknownStyle        ``/headshot`` with a style we do not have
    │   ├── BadStyleDescription a free-text style that is empty or too long (also a ``ValueError``)
    │   ├── UnsafeWords         free-text words asking for what we never render (sexual, a minor, a public figure)
    │   └── SessionError        a command that does not fit the session's state (raised by bot/core, with its text)
    ├── JobCancelled            ``should_stop`` ended training or rendering early (a ``/cancel``, a timeout)
    └── InfrastructureError     our fault or the machine's; logged with a traceback, retried where transient
        ├── ModelLoadError      a model could not be loaded (bad id, no hub, missing files; the image safety check)
        ├── StorageError        blob storage unreachable or misconfigured; the message names the setting to fix
        ├── JobFailed           a worker job gave up (too many runs)
        └── OutOfGpuMemory      CUDA ran out of memory even at half the batch (one retry)

A user never reads ``str(error)``: it is for logs and operators. What a user reads is ``texts.explain(reason,
params)`` in the bot, so every sentence lives in one file whatever layer raised it. Only ``InfrastructureError``
subclasses are ever retried; a ``UserInputError`` is answered and forgotten. This module imports nothing heavy so
the bot process can use it without torch.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = [
    "BadStyleDescription",
    "HeadshotError",
    "InfrastructureError",
    "JobCancelled",
    "JobFailed",
    "ModelLoadError",
    "OutOfGpuMemory",
    "Param",
    "Reason",
    "SelfieRejected",
    "SessionError",
    "StorageError",
    "UnknownStyle",
    "UnsafeWords",
    "UserInputError",
]

Param = str | int | float


class Reason(StrEnum):
    """Why something could not be done, as a code a user's text is looked up by (and events carry)."""

    # A selfie (pipeline.selfies).
    EMPTY_FILE = "empty_file"
    NOT_A_PHOTO = "not_a_photo"
    TRUNCATED = "truncated"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_LONG_A_SIDE = "too_long_a_side"
    TOO_SMALL = "too_small"
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    FACE_TOO_SMALL = "face_too_small"
    BLURRY = "blurry"
    DUPLICATE = "duplicate"
    OTHER_PERSON = "other_person"
    # A style (pipeline.styles).
    UNKNOWN_STYLE = "unknown_style"
    STYLE_EMPTY = "style_empty"
    STYLE_TOO_LONG = "style_too_long"
    # Free-text words refused by the safety screen (pipeline.safety.text).
    UNSAFE_SEXUAL = "unsafe_sexual"
    UNSAFE_MINOR = "unsafe_minor"
    UNSAFE_PUBLIC_FIGURE = "unsafe_public_figure"
    # A job (the worker, the bot's watchdog).
    TRAINING_FAILED = "training_failed"
    RENDERING_FAILED = "rendering_failed"
    OUT_OF_GPU_MEMORY = "out_of_gpu_memory"
    TOO_MANY_TRIES = "too_many_tries"
    TIMED_OUT = "timed_out"
    JOB_LOST = "job_lost"
    ACTION_UNSUPPORTED = "action_unsupported"
    PREVIEW_UNSUPPORTED = "preview_unsupported"
    # A command that does not fit the session's state: bot/core raises it with the text from its texts module.
    SESSION = "session"
    # Not the user's: a model, storage, a cancelled job.
    MODEL_LOAD = "model_load"
    STORAGE = "storage"
    CANCELLED = "cancelled"


class HeadshotError(Exception):
    """Base of every error this project raises deliberately: a reason code, its parameters, and a log message."""

    default_reason: Reason | None = None

    def __init__(self, message: str, *, reason: Reason | None = None, **params: Param) -> None:
        super().__init__(message)
        chosen = reason or self.default_reason
        if chosen is None:
            raise TypeError(f"{type(self).__name__} needs a reason")
        self.reason: Reason = chosen
        self.params: dict[str, Param] = params

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled across processes (the bot's selfie check pool): rebuilt without __init__, whose reason argument
        # Exception's default pickling would drop.
        return (_restore, (type(self), self.args), self.__dict__)


def _restore(cls: type[HeadshotError], args: tuple[Any, ...]) -> HeadshotError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    return error


class UserInputError(HeadshotError):
    """Something the user sent or asked for cannot be done; the reason tells them what to change."""


class SelfieRejected(UserInputError):
    """A selfie was refused; the reason says why and what to send instead."""


class UnknownStyle(UserInputError):
    """A style name that is not a preset (and not usable as free text)."""

    default_reason = Reason.UNKNOWN_STYLE


class BadStyleDescription(UserInputError, ValueError):
    """A free-text style description that cannot be used as it is."""


class UnsafeWords(UserInputError):
    """A free-text style or remix asks for sexual content, a minor or a public figure; the reason says which."""


class SessionError(UserInputError):
    """A command that does not fit where the user's session is (e.g. ``/headshot`` before training).

    Raised by the bot's core only, which renders the text from ``bot/core/texts.py`` before raising.
    """

    default_reason = Reason.SESSION


class JobCancelled(HeadshotError):
    """``should_stop`` asked training or rendering to end early; partial results were dropped."""

    default_reason = Reason.CANCELLED


class InfrastructureError(HeadshotError):
    """A fault of the system, not of the user: logged in full, answered briefly."""


class ModelLoadError(InfrastructureError):
    """The diffusion model named in the settings, or the image safety detector, could not be loaded; the message says
    what to set."""

    default_reason = Reason.MODEL_LOAD


class StorageError(InfrastructureError):
    """Storage is unreachable or misconfigured; the message names the bucket or folder and the setting to fix."""

    default_reason = Reason.STORAGE


class JobFailed(InfrastructureError):
    """A worker job gave up; the reason says why, for the user."""


class OutOfGpuMemory(InfrastructureError):
    """The GPU ran out of memory even after one retry at half the batch."""

    default_reason = Reason.OUT_OF_GPU_MEMORY
