"""The store's schema: the migrations (``MIGRATIONS[n]`` takes the database from version n to n+1) and its rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from jobs.contract.kinds import JobKind
from jobs.contract.payloads import GenerateRequest, RenderMode
from pipeline.selfies.intake import SelfieFacts
from pipeline.subject import Subject

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ImageRow",
    "JobRow",
    "JobStatus",
    "SelfieRow",
    "SessionRow",
    "SessionState",
    "selfie_facts",
]

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE users (
        user_key TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_key TEXT NOT NULL REFERENCES users(user_key) ON DELETE CASCADE,
        state TEXT NOT NULL,
        train_attempt INTEGER NOT NULL DEFAULT 0,
        lora_key TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions(user_key, id);
    CREATE TABLE selfies (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        user_key TEXT NOT NULL,
        storage_key TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        user_key TEXT NOT NULL REFERENCES users(user_key) ON DELETE CASCADE,
        session_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        style TEXT,
        progress_message_id TEXT,
        created_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE TABLE images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        user_key TEXT NOT NULL REFERENCES users(user_key) ON DELETE CASCADE,
        storage_key TEXT NOT NULL,
        seed INTEGER NOT NULL,
        message_id TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX images_by_message ON images(user_key, message_id);
    CREATE TABLE favorites (
        user_key TEXT NOT NULL REFERENCES users(user_key) ON DELETE CASCADE,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        PRIMARY KEY (user_key, image_id)
    );
    CREATE TABLE delivered_events (
        event_id TEXT PRIMARY KEY,
        delivered_at REAL NOT NULL
    );
    """,
    # 1 -> 2: what the selfie checks learnt about each accepted face (pipeline.intake.SelfieFacts), so later
    # selfies are compared against earlier ones and training crops around the face.
    """
    ALTER TABLE selfies ADD COLUMN face_box TEXT;
    ALTER TABLE selfies ADD COLUMN phash TEXT;
    ALTER TABLE selfies ADD COLUMN embedding BLOB;
    """,
    # 2 -> 3: when the user left the chat (blocked the bot); NULL while the chat reaches them.
    """
    ALTER TABLE users ADD COLUMN left_at REAL;
    """,
    # 3 -> 4: the id of the newest message from the user that the bot handled, so a restarted bot can read back what
    # it missed (Discord does not replay a gateway's events to a new session); NULL until the first one.
    """
    ALTER TABLE users ADD COLUMN last_message_id TEXT;
    """,
    # 4 -> 5: how the user asked to be described (pipeline.subject: "woman 30s glasses"); NULL, as in sessions from
    # before, is a person.
    """
    ALTER TABLE sessions ADD COLUMN subject TEXT;
    """,
    # 5 -> 6: a generation job's request (GenerateRequest as JSON), so an action on one of its headshots (/more,
    # /remix, /upscale) renders in the style it was made in; NULL for training and older jobs.
    """
    ALTER TABLE jobs ADD COLUMN request TEXT;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class SessionState(StrEnum):
    """Where a user's session is; ``bot/core/session.py`` draws the machine and holds every transition."""

    NEW = "new"
    COLLECTING = "collecting"
    TRAINING = "training"
    READY = "ready"
    GENERATING = "generating"

    @property
    def has_model(self) -> bool:
        return self in (SessionState.READY, SessionState.GENERATING)


class JobStatus(StrEnum):
    """A job as the bot knows it: queued and running are open, the rest finished."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNDELIVERABLE = "undeliverable"  # the chat refused the job's messages for good (e.g. the user blocked the bot)

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class SessionRow:
    id: int
    user_key: str
    state: SessionState
    train_attempt: int
    lora_key: str | None
    subject: Subject = Subject()

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", SessionState(self.state))  # stored as text, read back as the enum
        if not isinstance(self.subject, Subject):  # stored as its /train words
            object.__setattr__(self, "subject", Subject.from_words(self.subject))


@dataclass(frozen=True)
class JobRow:
    job_id: str
    user_key: str
    session_id: int
    kind: JobKind
    status: JobStatus
    style: str | None
    progress_message_id: str | None
    request: GenerateRequest | None = None  # a generation job's, as the bot enqueued it

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", JobKind(self.kind))
        object.__setattr__(self, "status", JobStatus(self.status))
        if isinstance(self.request, str):  # stored as JSON, read back as the request
            object.__setattr__(self, "request", GenerateRequest.from_dict(json.loads(self.request)))

    def request_json(self) -> str | None:
        return None if self.request is None else json.dumps(self.request.to_dict())

    @property
    def is_preview(self) -> bool:
        """A render from the selfies, with no LoRA: it leaves the session's state alone (``bot/core/previews``)."""
        return self.request is not None and self.request.mode == RenderMode.PREVIEW


@dataclass(frozen=True)
class SelfieRow:
    storage_key: str
    width: int
    height: int
    facts: SelfieFacts | None  # None for selfies stored before the face checks existed


@dataclass(frozen=True)
class ImageRow:
    id: int
    job_id: str
    storage_key: str
    seed: int
    message_id: str | None


def selfie_facts(face_box: str | None, phash: str | None, embedding: bytes | None) -> SelfieFacts | None:
    if face_box is None or phash is None or embedding is None:
        return None
    left, top, width, height = (int(value) for value in face_box.split(","))
    return SelfieFacts((left, top, width, height), int(phash, 16), np.frombuffer(embedding, dtype="<f4").copy())
