"""The one selfie status message of a batch run: every verdict and the running count, edited as photos arrive.

A user who sends photos one after another (or an album, which some platforms split into several messages) sees
one message grow instead of a reply per photo. Any text command closes the run; the next photo opens a new one.
The state lives in memory: after a restart the next photo simply posts a fresh status message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cachetools import LRUCache

from bot.core.types import Button, ChatPort, ChatRef, Reply

__all__ = ["SelfieStatus"]

log = logging.getLogger(__name__)

MAX_LINES = 30  # 20 selfies and a few refusals fit; older verdicts fold into one line (Telegram caps at 4096 chars)
MAX_OPEN = 10_000  # open runs kept; the least recently used is forgotten first, so memory stays bounded over weeks


@dataclass
class _Run:
    session_id: int
    message_id: str
    lines: list[str] = field(default_factory=list)


class SelfieStatus:
    def __init__(self) -> None:
        self._runs: LRUCache[str, _Run] = LRUCache(maxsize=MAX_OPEN)

    def close(self, user_key: str) -> None:
        """End the user's run: the next photo gets a new status message (below whatever came in between)."""
        self._runs.pop(user_key, None)

    def verdicts(self, user_key: str, session_id: int) -> int:
        """How many verdicts the open run shows, to number photos that came without a file name."""
        run = self._runs.get(user_key)
        return len(run.lines) if run is not None and run.session_id == session_id else 0

    async def show(
        self,
        port: ChatPort,
        chat: ChatRef,
        session_id: int,
        new_lines: list[str],
        footer: str,
        buttons: tuple[Button, ...],
    ) -> None:
        """Add ``new_lines`` to the run's message (editing it), or post the message when no run is open."""
        run = self._runs.get(chat.user_key)
        if run is not None and run.session_id != session_id:
            run = None
        lines = (run.lines if run is not None else []) + new_lines
        reply = Reply(_render(lines, footer), buttons)
        if run is not None:
            try:
                # Not throttled: a verdict is an answer the user waits for (one per message they send, not a stream
                # of progress), and only an edit made now lets a failure post a fresh message below.
                await port.edit(chat.chat_id, run.message_id, reply, final=True)
                run.lines = lines
                return
            except Exception:
                # The message may be gone (deleted by the user, too old to edit): post a fresh one instead.
                log.warning("editing the selfie status of %s failed; posting a new one", chat.user_key, exc_info=True)
        message_id = await port.send(chat.chat_id, reply)
        self._runs[chat.user_key] = _Run(session_id, message_id, lines)


def _render(lines: list[str], footer: str) -> str:
    shown = lines[-MAX_LINES:]
    folded = [f"… {len(lines) - len(shown)} earlier"] if len(lines) > len(shown) else []
    return "\n".join([*folded, *shown, footer])
