"""Style lookup as the user types it, the samplers a style may pick, and styles from the user's own words."""

from __future__ import annotations

import pytest

from bot.core.texts import explain
from pipeline.errors import BadStyleDescription, UnknownStyle
from pipeline.styles import IDENTIFIER_TOKEN, SCHEDULERS, STYLES, Style, custom_style, remix_style, resolve_style
from tests.said import refused


def test_unknown_style_names_the_choices() -> None:
    with pytest.raises(UnknownStyle) as caught:
        resolve_style("vaporwave")
    message = explain(caught.value)
    assert "vaporwave" in message
    assert all(name in message for name in STYLES)


def test_style_names_are_forgiving() -> None:
    assert resolve_style("  LinkedIn ").name == "linkedin"
    assert resolve_style("B&W").name == "black-and-white"


def test_unknown_scheduler_names_it_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'lms'.*euler, euler_a, dpmpp_2m, dpmpp_2m_karras, ddim"):
        Style("odd", "Odd", "photo of {subject}", scheduler="lms")


def test_presets_default_to_dpmpp_2m_karras() -> None:
    assert len(STYLES) == 8
    assert {style.scheduler for style in STYLES.values()} == {"dpmpp_2m_karras"}


def test_custom_style_wraps_the_users_words_in_a_headshot_prompt() -> None:
    style = custom_style("  navy suit,\n rooftop at dusk\u202e {name}\x00 ")
    assert style.render_prompt() == (
        f"professional headshot photo of {IDENTIFIER_TOKEN}, navy suit, rooftop at dusk {{name}}"
    )
    assert style.negative_prompt and style.scheduler in SCHEDULERS


def test_custom_style_refuses_too_long_or_empty_text() -> None:
    with refused(BadStyleDescription, match="301 characters long; keep it to 300"):
        custom_style("x" * 301)
    with refused(BadStyleDescription, match="empty"):
        custom_style(" \n\t ")
    assert custom_style("y" * 300).prompt.endswith("y" * 300)


def test_a_remix_puts_the_words_after_the_subject_and_keeps_the_look() -> None:
    base = STYLES["black-and-white"]
    remix = remix_style(base, "  in a {jazz} club\n", "Black and white, remixed")
    assert remix.render_prompt() == (
        "black and white portrait photograph of sks person, in a {jazz} club, black turtleneck, plain dark background, "
        "dramatic side lighting, fine film grain, timeless classic look"
    )
    assert (remix.negative_prompt, remix.aspect, remix.scheduler, remix.guidance_scale) == (
        base.negative_prompt,
        base.aspect,
        base.scheduler,
        base.guidance_scale,
    )
    with refused(BadStyleDescription, "description is empty"):
        remix_style(base, " \u200b ", "x")
