"""The screen on a user's own words: disguised words are read as what they hide, innocent words that contain a
refused one pass, and every refused request says why by reason code."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import BadStyleDescription, Reason, UnsafeWords
from pipeline.safety.text import Concern, check_words, normalise, screen
from pipeline.safety.words import MINOR, PUBLIC_FIGURES, SEXUAL
from pipeline.styles import STYLES, custom_style, remix_style


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("NUDE", "nude"),
        ("ｎｕｄｅ", "nude"),  # fullwidth
        ("𝐧𝐮𝐝𝐞", "nude"),  # mathematical bold
        ("n\u200bu\u200dde", "nude"),  # zero-width space and joiner
        ("nudе", "nude"),  # a Cyrillic е
        ("ΝUDΕ", "nude"),  # Greek capital nu and epsilon
        ("nüdé", "nude"),
        ("p0rn", "porn"),
        ("$3xy", "sexy"),
        ("n@ked", "naked"),
        ("t0pl355", "topless"),
        ("n u d e beach", "nude beach"),
        ("n.u.d.e", "nude"),
        ("n-u-d-e", "nude"),
        ("nu_de", "nude"),
        ("Beyoncé", "beyonce"),
    ],
)
def test_disguises_normalise_to_the_word_they_hide(text: str, reading: str) -> None:
    assert normalise(text) == reading


@pytest.mark.parametrize(
    ("text", "concern"),
    [
        ("nude on a beach", Concern.SEXUAL),
        ("in lingerie, boudoir light", Concern.SEXUAL),
        ("p 0 r n star", Concern.SEXUAL),
        ("s.e.x.y pose", Concern.SEXUAL),
        ("nuuuuude", Concern.SEXUAL),
        ("sexxxy", Concern.SEXUAL),
        ("sexy-nude", Concern.SEXUAL),
        ("wearing no clothes", Concern.SEXUAL),
        ("as a child", Concern.MINOR),
        ("as a 12 year old", Concern.MINOR),
        ("13yo in a school", Concern.MINOR),
        ("aged 15", Concern.MINOR),
        ("fifteen years old", Concern.MINOR),
        ("seventeen-year-old", Concern.MINOR),
        ("1oli", Concern.MINOR),  # "1" read as "l"
        ("sexy teen", Concern.MINOR),  # the most serious concern is the one reported
        ("shaking hands with Donald Trump", Concern.PUBLIC_FIGURE),
        ("next to ELON MUSK", Concern.PUBLIC_FIGURE),
        ("as Taylor  Swift", Concern.PUBLIC_FIGURE),
        ("beyoncé on stage", Concern.PUBLIC_FIGURE),
        ("with Оbаmа", Concern.PUBLIC_FIGURE),  # Cyrillic О and а
    ],
)
def test_refused_words_are_caught_through_their_disguises(text: str, concern: Concern) -> None:
    assert screen(text) == concern


@pytest.mark.parametrize(
    "text",
    [
        "navy suit on a rooftop at dusk",
        "in Essex countryside, tweed jacket",
        "Middlesex university library",
        "therapist's office, warm light",
        "cocktail bar at night",
        "analyst at a trading desk",
        "a trumpet player on stage",
        "Harris tweed jacket",
        "musk cologne ad",
        "swift and confident look",
        "breast pocket square, baby blue tie",
        "in her 30s, 18 years old whisky in hand",
        "aged 40, silver hair",
        "thirty years of experience",
        "1990s yearbook style",
        "canteen at lunch, fifteen people behind",
        "kidney bean salad on the desk",
        "Sussex, Wessex and the sea",
        "grapes and wine, classic dinner",
        "an assassin's creed hoodie",
        "b&w, 85mm, f/1.8",
        "c++ developer at a whiteboard",
        "professional, friendly, confident, LinkedIn",
    ],
)
def test_innocent_words_that_contain_refused_ones_pass(text: str) -> None:
    assert screen(text) is None


def test_every_preset_style_passes_the_screen() -> None:
    for style in STYLES.values():
        assert screen(style.render_prompt()) is None and screen(style.render_sentence()) is None


def test_a_refusal_carries_the_reason_and_never_the_words() -> None:
    with pytest.raises(UnsafeWords) as refused:
        check_words("n.u.d.e on the beach")
    assert refused.value.reason == Reason.UNSAFE_SEXUAL
    assert "nude" not in str(refused.value) and refused.value.params == {}
    check_words("navy suit on a rooftop")  # no error


def test_free_text_styles_and_remixes_are_screened_where_they_are_built() -> None:
    with pytest.raises(UnsafeWords) as refused:
        custom_style("as a 12 year old in a classroom")
    assert refused.value.reason == Reason.UNSAFE_MINOR
    with pytest.raises(UnsafeWords) as refused:
        remix_style(STYLES["studio"], "next to Kim Kardashian", "Studio, remixed")
    assert refused.value.reason == Reason.UNSAFE_PUBLIC_FIGURE
    with pytest.raises(UnsafeWords):
        custom_style("in a n\u200bude pose")  # a zero-width space inside the word, which cleaning turns into a space
    # The length check comes first, so a flood is refused by its length, not scanned.
    with pytest.raises(BadStyleDescription):
        custom_style("nude " * 100)


_LOOKALIKES = {"a": ["а", "α", "@", "4"], "e": ["е", "ε", "3"], "o": ["о", "ο", "0"], "s": ["$", "5", "ѕ"]}
_INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]


@st.composite
def _disguised(draw: st.DrawFn, words: list[str]) -> tuple[str, str]:
    """A listed word or phrase, disguised letter by letter as people do: case, look-alikes, invisible characters."""
    word = draw(st.sampled_from(words))
    out = []
    for char in word:
        choice = draw(st.sampled_from(["keep", "upper", "lookalike", "invisible"]))
        if choice == "upper":
            char = char.upper()
        elif choice == "lookalike" and char in _LOOKALIKES:
            char = draw(st.sampled_from(_LOOKALIKES[char]))
        elif choice == "invisible":
            char += draw(st.sampled_from(_INVISIBLE))
        out.append(char)
    before = draw(st.sampled_from(["", "portrait ", "in a suit, "]))
    after = draw(st.sampled_from(["", " at dusk", ", studio light"]))
    return word, before + "".join(out) + after


@given(_disguised(sorted(SEXUAL)))
def test_any_disguised_sexual_word_is_refused(case: tuple[str, str]) -> None:
    word, text = case
    assert screen(text) in (Concern.SEXUAL, Concern.MINOR), (word, text)


@given(_disguised(sorted(MINOR)))
def test_any_disguised_minor_word_is_refused(case: tuple[str, str]) -> None:
    word, text = case
    assert screen(text) == Concern.MINOR, (word, text)


@given(_disguised(sorted(PUBLIC_FIGURES)))
def test_any_disguised_public_figure_is_refused(case: tuple[str, str]) -> None:
    word, text = case
    assert screen(text) is not None, (word, text)


@given(st.text(max_size=300))
def test_the_screen_takes_any_text(text: str) -> None:
    assert screen(text) in (None, *Concern)
