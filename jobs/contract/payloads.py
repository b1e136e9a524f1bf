"""Job payloads: ids and storage keys only, never image bytes; and the deterministic job ids."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from jobs.contract.keys import user_prefix
from jobs.contract.kinds import JobKind
from pipeline.styles import Style
from pipeline.subject import Subject

__all__ = [
    "PREVIEW_REFERENCES",
    "GenerateRequest",
    "RenderMode",
    "TrainRequest",
    "generate_job_id",
    "job_owner",
    "train_job_id",
]


def train_job_id(user_key: str, session_id: int, attempt: int) -> str:
    """The same session and attempt always give the same id, so a double ``/train start`` enqueues once."""
    return f"{JobKind.TRAIN}:{user_key}:{session_id}:{attempt}"


def generate_job_id(user_key: str, request_id: str) -> str:
    return f"{JobKind.GENERATE}:{user_key}:{request_id}"


def _check_owned(user_key: str, **keys: str | list[str] | tuple[str, ...] | None) -> None:
    """Raise ``ValueError`` naming the first storage key (or prefix) outside ``user_key``'s folder: a job reads and
    writes only its own user's blobs, whoever built its payload."""
    prefix = user_prefix(user_key)
    for name, value in keys.items():
        for key in [value] if isinstance(value, str) else value or ():
            if not key.startswith(prefix):
                raise ValueError(f"{name} {key!r} is not under {user_key}'s storage folder {prefix!r}.")


def job_owner(job_id: str) -> str | None:
    """The user key inside a job id made by ``train_job_id`` or ``generate_job_id``; None for any other id.

    Parsed from the right, so a user id holding ':' still yields its whole key (and never a shorter user's).
    """
    kind, _, rest = job_id.partition(":")
    if kind == JobKind.TRAIN:
        parts = rest.rsplit(":", 2)
        return parts[0] if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() else None
    if kind == JobKind.GENERATE:
        owner, _, request_id = rest.rpartition(":")
        return owner if owner and request_id else None
    return None


@dataclass(frozen=True)
class TrainRequest:
    """Train a LoRA on a session's selfies and store it under ``lora_key``."""

    user_key: str
    session_id: int
    selfie_keys: list[str]
    lora_key: str
    seed: int = 0
    # One normalised (x, y) face centre per selfie, for crops that keep the face; None: centre crops.
    crop_centers: list[list[float]] | None = None
    # How the caption and the class prompt describe the user; payloads from before subjects train a "person".
    subject: Subject = Subject()

    def __post_init__(self) -> None:
        _check_owned(self.user_key, selfie_keys=self.selfie_keys, lora_key=self.lora_key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TrainRequest:
        return cls(**{**payload, "subject": Subject(**payload.get("subject") or {})})


# Selfies a preview renders from: each reference adds its tokens to every denoising step of klein, so a third photo
# costs more time than it adds likeness.
PREVIEW_REFERENCES = 2


class RenderMode(StrEnum):
    """What a generation job renders from: the prompt alone, or one of the user's headshots (``source_key``)."""

    PROMPT = "prompt"  # /headshot
    VARY = "vary"  # /more: near variants of the source, new seeds
    REMIX = "remix"  # /remix: the source's composition in a scene of the user's words
    UPSCALE = "upscale"  # /upscale: twice the size, a hires pass and the face pass
    # From the selfies themselves, no LoRA (klein's reference photos): the preview while training, or /headshot
    # before any training.
    PREVIEW = "preview"


@dataclass(frozen=True)
class GenerateRequest:
    """Render ``count`` headshots of ``style`` with the LoRA at ``lora_key``, into ``output_prefix``.

    ``style`` is resolved once, by the bot, from the user's words (a preset or their own description), and travels
    whole: the worker renders it as it is and names its title in the result. ``mode`` and ``source_key`` came later
    with defaults, so a payload queued by an older bot still reads as the prompt-only render it was.
    """

    user_key: str
    request_id: str
    lora_key: str
    style: Style
    count: int
    seed: int
    output_prefix: str
    # Who the prompt names, as the LoRA was trained; payloads from before subjects render a "person".
    subject: Subject = Subject()
    mode: RenderMode = RenderMode.PROMPT
    source_key: str | None = None  # the headshot an action starts from, None for PROMPT
    # PREVIEW only: the selfies to render from and each one's normalised face centre.
    reference_keys: tuple[str, ...] = ()
    reference_centers: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        _check_owned(
            self.user_key,
            lora_key=self.lora_key,
            output_prefix=self.output_prefix,
            source_key=self.source_key,
            reference_keys=self.reference_keys,
        )
        from_headshot = self.mode not in (RenderMode.PROMPT, RenderMode.PREVIEW)
        if from_headshot != (self.source_key is not None):
            raise ValueError(f"A {self.mode} render needs a source_key exactly when it starts from a headshot.")
        if (self.mode == RenderMode.PREVIEW) != bool(self.reference_keys):
            raise ValueError(f"A {self.mode} render needs reference_keys exactly when it is a preview.")
        if self.reference_centers is not None and len(self.reference_centers) != len(self.reference_keys):
            raise ValueError(
                f"reference_centers has {len(self.reference_centers)} entries for {len(self.reference_keys)} "
                "reference_keys; give one per key or None."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> GenerateRequest:
        style = dict(payload["style"])
        style["aspect"] = tuple(style["aspect"])  # JSON and msgpack hand tuples back as lists
        subject = Subject(**payload.get("subject") or {})
        mode = RenderMode(payload.get("mode", RenderMode.PROMPT))
        # JSON and msgpack hand tuples back as lists.
        references = tuple(payload.get("reference_keys") or ())
        centers = payload.get("reference_centers")
        return cls(
            **{
                **payload,
                "style": Style(**style),
                "subject": subject,
                "mode": mode,
                "reference_keys": references,
                "reference_centers": None if centers is None else tuple((x, y) for x, y in centers),
            }
        )
