"""The DM session's states, one named state at a time, persisted in the store so a restart resumes it.

NEW ──/train──▶ COLLECTING ──/train start (enough selfies)──▶ TRAINING ──trained──▶ READY
                   ▲  │ selfie ⟲                               │ failed / cancelled     │ ▲
                   │  └────────────────────────────────────────┘ (selfies kept)        │ │ images ready,
                   └──────────────── /train new ◀── READY                    /headshot ▼ │ failed, cancelled
                                                                                  GENERATING
any state ──/delete confirm──▶ NEW (everything of the user gone)
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SessionState"]


class SessionState(StrEnum):
    NEW = "new"
    COLLECTING = "collecting"
    TRAINING = "training"
    READY = "ready"
    GENERATING = "generating"

    @property
    def has_model(self) -> bool:
        return self in (SessionState.READY, SessionState.GENERATING)
