"""Writing a tiny offline checkpoint into the model cache once, atomically, whichever model family it is."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["build_once"]


def build_once(directory: Path, expected: dict[str, int], marker: str, build: Callable[[Path], None]) -> Path:
    """Run ``build(folder)`` into a sibling temporary folder and rename it to ``directory`` (or reuse a finished one).

    ``expected`` (seed, version) is written to ``marker`` last, so a crash never leaves a half-written checkpoint
    that looks complete, and a build of another seed or version is replaced rather than reused.
    """
    directory = Path(directory)
    if _is_complete(directory, marker, expected):
        return directory

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        build(staging / "model")
        (staging / "model" / marker).write_text(json.dumps(expected), encoding="utf-8")
        if _is_complete(directory, marker, expected):
            return directory  # another worker sharing this cache finished first; never delete what it loads
        if directory.exists():
            shutil.rmtree(directory)  # A stale build (other seed/version or no marker) is replaced, not merged.
        try:
            (staging / "model").rename(directory)
        except OSError:
            # Another process finished the same build between our check and the rename: use theirs.
            if not _is_complete(directory, marker, expected):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _is_complete(directory: Path, marker: str, expected: dict[str, int]) -> bool:
    try:
        return bool(json.loads((directory / marker).read_text(encoding="utf-8")) == expected)
    except (OSError, ValueError):
        return False  # Missing or unreadable marker: an unknown or half-finished build.
