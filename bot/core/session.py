"""The DM session's state machine: every change to a session's state or a job's status is one named transition here.

NEW ──/train──▶ COLLECTING ──/train start (enough selfies)──▶ TRAINING ──trained──▶ READY
                   ▲  │ selfie ⟲                               │ failed / cancelled /   │ ▲
                   │  └────────────────────────────────────────┘ undeliverable          │ │ images posted,
                   │                                             (selfies kept)         │ │ failed, cancelled,
                   └──────────────── /train new ◀── READY                    /headshot ▼ │ undeliverable
                                                                                  GENERATING
(/more, /remix and /upscale on a headshot are renders too: READY ──▶ GENERATING, as /headshot.)
(A preview from the selfies, while COLLECTING or TRAINING, is a render that moves no state: bot/core/previews.py.)
any state ──/delete confirm──▶ NEW (everything of the user gone); READY ──model expired──▶ NEW

A job is undeliverable when the chat refused its messages for good (the user blocked the bot, a file too big): it
ends as a failure does, so the session is free again when the user comes back.

The state is persisted with the session (``bot/store``), so a restart resumes it. Commands (``service.py``,
``training.py``) and worker events (``delivery.py``, ``retention.py``) decide *when*; these functions are *what*
happens to the rows, so each transition is written once.
"""

from __future__ import annotations

from dataclasses import replace

from bot.store.database import Store
from bot.store.schema import JobRow, JobStatus, SessionRow, SessionState
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import GenerateRequest
from pipeline.subject import Subject

__all__ = [
    "JobStatus",
    "SessionState",
    "all_undeliverable",
    "images_posted",
    "job_ended",
    "job_started",
    "job_undeliverable",
    "model_trained",
    "models_expired",
    "open_session",
    "rendering_queued",
    "state_of",
    "subject_chosen",
    "training_queued",
]


def state_of(session: SessionRow | None) -> SessionState:
    return session.state if session is not None else SessionState.NEW


async def open_session(store: Store, user_key: str, subject: Subject | None = None) -> SessionRow:
    """``/train`` (or ``/train new``): a fresh session collecting selfies; an older one keeps its model and images."""
    return await store.new_session(user_key, SessionState.COLLECTING, subject)


async def subject_chosen(store: Store, session: SessionRow, subject: Subject) -> SessionRow:
    """``/train woman 30s``: only while collecting, since training binds the face to the description."""
    if session.state != SessionState.COLLECTING:
        raise ValueError(f"the subject changes only while collecting, not in {session.state!r}")
    await store.update_session(session.user_key, session.id, subject=subject)
    return replace(session, subject=subject)


async def training_queued(store: Store, session: SessionRow, job_id: str) -> None:
    """``/train start``: the job is recorded before it is enqueued, so no event can name a job the bot lacks."""
    await store.add_job(JobRow(job_id, session.user_key, session.id, JobKind.TRAIN, JobStatus.QUEUED, None, None))
    await store.update_session(session.user_key, session.id, state=SessionState.TRAINING)


async def rendering_queued(store: Store, session: SessionRow, job_id: str, request: GenerateRequest) -> None:
    """``/headshot`` (or ``/more``, ``/remix``, ``/upscale``): recorded with its request before it is enqueued, as
    training is. A preview from the selfies leaves the session where it is (collecting, or training beside it)."""
    row = JobRow(
        job_id, session.user_key, session.id, JobKind.GENERATE, JobStatus.QUEUED, request.style.name, None, request
    )
    await store.add_job(row)
    if not row.is_preview:
        await store.update_session(session.user_key, session.id, state=SessionState.GENERATING)


async def job_started(store: Store, job: JobRow) -> None:
    await store.update_job(job.user_key, job.job_id, status=JobStatus.RUNNING)


async def model_trained(store: Store, job: JobRow, lora_key: str) -> None:
    await store.update_session(job.user_key, job.session_id, state=SessionState.READY, lora_key=lora_key)
    await store.update_job(job.user_key, job.job_id, status=JobStatus.DONE)


async def images_posted(store: Store, job: JobRow) -> None:
    await store.update_job(job.user_key, job.job_id, status=JobStatus.DONE)
    if not job.is_preview:  # a preview's session was never GENERATING
        await store.update_session(job.user_key, job.session_id, state=SessionState.READY)


async def job_ended(store: Store, job: JobRow, status: JobStatus) -> None:
    """A job failed, was cancelled (by ``/cancel`` or the worker) or is undeliverable: its session goes back to
    where it came from.

    Only the user's current session moves: a job of a session the user has since left behind changes nothing. A
    training that did not finish gets a new attempt number, so the next ``/train start`` has a fresh job id.
    """
    if status not in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.UNDELIVERABLE):
        raise ValueError(f"job_ended takes failed, cancelled or undeliverable, not {status!r}")
    await store.update_job(job.user_key, job.job_id, status=status)
    session = await store.current_session(job.user_key)
    if session is None or session.id != job.session_id or job.is_preview:  # a preview never moved the session
        return
    if job.kind == JobKind.TRAIN:
        await store.update_session(
            job.user_key, session.id, state=SessionState.COLLECTING, train_attempt=session.train_attempt + 1
        )
    else:
        await store.update_session(job.user_key, session.id, state=SessionState.READY)


async def job_undeliverable(store: Store, job: JobRow) -> bool:
    """The chat refused the job's messages for good: an open job ends as undeliverable (its session freed); a job
    that already ended (its model was trained before the refusal) stays as it is. True when the job was open."""
    current = await store.job(job.user_key, job.job_id)
    if current is None or current.status.finished:
        return False
    await job_ended(store, current, JobStatus.UNDELIVERABLE)
    return True


async def all_undeliverable(store: Store, user_key: str, *, but: str | None = None) -> list[JobRow]:
    """The user's chat refuses everything (they blocked the bot): every open job of theirs (a training and its
    preview can both be open), ``but`` the one the caller settles itself, ends as undeliverable; returns those."""
    ended = []
    for job in await store.open_jobs(user_key):
        if job.job_id != but and await job_undeliverable(store, job):
            ended.append(job)
    return ended


async def models_expired(store: Store, user_key: str, keys: list[str]) -> tuple[int, int]:
    """Retention deleted these blobs: a session whose model went starts over; returns (models, headshots) gone."""
    return await store.forget_blobs(user_key, keys, model_gone_state=SessionState.NEW)
