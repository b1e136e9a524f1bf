"""Style lookup as the user types it."""

from __future__ import annotations

import pytest

from pipeline.errors import UnknownStyle
from pipeline.styles import STYLES, resolve_style


def test_unknown_style_names_the_choices() -> None:
    with pytest.raises(UnknownStyle) as caught:
        resolve_style("vaporwave")
    message = str(caught.value)
    assert "vaporwave" in message
    assert all(name in message for name in STYLES)


def test_style_names_are_forgiving() -> None:
    assert resolve_style("  LinkedIn ").name == "linkedin"
    assert resolve_style("B&W").name == "black-and-white"
