"""Log lines of ``headshot-bot`` and ``headshot-worker``: text for a terminal, JSON lines for a log pipeline.

``log_context(job_id=..., user_key=...)`` tags every line logged inside it; contextvars follow asyncio tasks and
``asyncio.to_thread``, so a job's torch thread is tagged too. The settings' secrets (chat tokens, the Redis password)
are masked in every line, whoever wrote it: httpx, for one, logs Telegram request URLs, and those carry the token.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import urlsplit

from pydantic import SecretStr

from jobs.settings import Settings

__all__ = [
    "CONTEXT_FIELDS",
    "MASK",
    "bind_log_context",
    "build_log_handler",
    "configure_logging",
    "log_context",
    "mask_secrets",
    "secrets_of",
]

CONTEXT_FIELDS = ("job_id", "user_key")
MASK = "**********"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"

# One tag set per asyncio task (and per thread started from it); empty outside any job or message.
_context: ContextVar[dict[str, str]] = ContextVar("headshot_log_context", default={})  # noqa: B039 (never mutated)


class log_context:  # noqa: N801 (used like a function: ``with log_context(user_key=...):``)
    """Tag the lines logged inside the block with ``fields`` (None values are left out).

    Works with ``with`` and ``async with``, so it can join an ``async with lock, log_context(...)`` line.
    """

    def __init__(self, **fields: str | None) -> None:
        self._fields = {k: v for k, v in fields.items() if v is not None}
        self._token: Token[dict[str, str]] | None = None

    def __enter__(self) -> None:
        self._token = _context.set({**_context.get(), **self._fields})

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _context.reset(self._token)
            self._token = None

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def bind_log_context(**fields: str | None) -> None:
    """Tag the rest of the current task: for arq hooks, which run each job in a task of its own."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings hold: ``SecretStr`` fields and the password inside ``redis_url``."""
    found = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found.append(value.get_secret_value())
    if settings.redis_url and urlsplit(settings.redis_url).password:
        found.append(str(urlsplit(settings.redis_url).password))
    return found


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each of ``secrets`` replaced by ``MASK``: the one masker of logs and output."""
    # Longest first, so a secret that contains another is masked whole; an empty one would mask between every letter.
    for secret in sorted({secret for secret in secrets if secret}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class _ContextFilter(logging.Filter):
    """Copies the task's tags onto each record (as attributes, for both formats)."""

    def filter(self, record: logging.LogRecord) -> bool:
        tags = _context.get()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):  # a field passed with ``extra=`` wins
                setattr(record, name, tags.get(name))
        shown = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if getattr(record, name))
        record.context = f" [{shown}]" if shown else ""
        return True


class _MaskingFormatter(logging.Formatter):
    def __init__(self, secrets: list[str], fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._secrets = secrets

    def mask(self, text: str) -> str:
        return mask_secrets(text, self._secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.mask(super().format(record))


class JsonFormatter(_MaskingFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, job_id/user_key when known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return self.mask(json.dumps(entry, ensure_ascii=False, default=str))


def build_log_handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing ``settings.log_format`` lines to ``stream`` (stderr by default), secrets masked."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_ContextFilter())
    secrets = secrets_of(settings)
    json_lines = settings.log_format == "json"
    handler.setFormatter(JsonFormatter(secrets) if json_lines else _MaskingFormatter(secrets, TEXT_FORMAT))
    return handler


def configure_logging(settings: Settings) -> None:
    """Route every logger of the process through one handler, at ``settings.log_level``."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper())
    if level is None:
        raise ValueError(
            f"HEADSHOT_LOG_LEVEL={settings.log_level!r} is not a logging level: use DEBUG, INFO, WARNING or ERROR."
        )
    root = logging.getLogger()
    for old in list(root.handlers):  # one line per record, not one per handler someone installed before us
        root.removeHandler(old)
    root.addHandler(build_log_handler(settings))
    root.setLevel(level)
