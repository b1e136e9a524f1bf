"""Asserting what a user reads when a lower layer refuses: the error's reason as ``bot/core/texts.py`` renders it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from bot.core.texts import explain
from pipeline.errors import HeadshotError


@contextlib.contextmanager
def refused(kind: type[HeadshotError], match: str) -> Iterator[Any]:
    """Like ``pytest.raises(kind, match=...)``, but ``match`` is searched in the text the user is shown."""
    with pytest.raises(kind) as caught:
        yield caught
    said = explain(caught.value)
    assert re.search(match, said), f"{match!r} not in what the user reads: {said!r}"
