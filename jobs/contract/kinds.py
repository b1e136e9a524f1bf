"""The two kinds of job a worker runs, named once: arq function names and the bot's stored job kind derive from it."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["JobKind"]


class JobKind(StrEnum):
    TRAIN = "train"
    GENERATE = "generate"

    @property
    def function(self) -> str:
        """The arq function name a worker registers for this kind (stable: queued jobs name it)."""
        return _FUNCTIONS[self]


_FUNCTIONS = {JobKind.TRAIN: "train_lora", JobKind.GENERATE: "generate_headshots"}
