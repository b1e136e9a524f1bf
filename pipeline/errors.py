"""Every error the product raises on purpose, drawn in one place.

    HeadshotError
    ├── UserInputError          the user can fix it; ``str(error)`` is the reply they read
    │   ├── SelfieRejected      a photo that cannot be used (not an image, truncated, too small)
    │   ├── UnknownStyle        ``/headshot`` with a style we do not have
    │   ├── BadStyleDescription a free-text style that is empty or too long (also a ``ValueError``)
    │   └── SessionError        a command that does not fit the session's state (bot/core raises it)
    └── InfrastructureError     our fault or the machine's; logged with a traceback, retried where transient
        ├── ModelLoadError      the base model could not be loaded (bad id, no hub, missing files)
        ├── JobFailed           a worker job failed; the bot tells the user it did, not why in detail
        └── OutOfGpuMemory      CUDA ran out of memory even at half the batch (one retry); safe to show

Only ``InfrastructureError`` subclasses are ever retried; a ``UserInputError`` is answered and forgotten.
This module imports nothing heavy so the bot process can use it without torch.
"""

from __future__ import annotations

__all__ = [
    "BadStyleDescription",
    "HeadshotError",
    "InfrastructureError",
    "JobFailed",
    "ModelLoadError",
    "OutOfGpuMemory",
    "SelfieRejected",
    "SessionError",
    "UnknownStyle",
    "UserInputError",
]


class HeadshotError(Exception):
    """Base of every error this project raises deliberately."""


class UserInputError(HeadshotError):
    """Something the user sent or asked for cannot be done; the message is written for them."""


class SelfieRejected(UserInputError):
    """A selfie was refused; the message says why and what to send instead."""


class UnknownStyle(UserInputError):
    """A style name that is not a preset (and not usable as free text)."""


class BadStyleDescription(UserInputError, ValueError):
    """A free-text style description that cannot be used as it is; the message says why."""


class SessionError(UserInputError):
    """A command that does not fit where the user's session is (e.g. ``/headshot`` before training)."""


class InfrastructureError(HeadshotError):
    """A fault of the system, not of the user: logged in full, answered briefly."""


class ModelLoadError(InfrastructureError):
    """The diffusion model named in the settings could not be loaded."""


class JobFailed(InfrastructureError):
    """A worker job ended in failure; carries a reason safe to show to the user."""


class OutOfGpuMemory(InfrastructureError):
    """The GPU ran out of memory even after one retry at half the batch; the message is safe to show a user."""
