"""/headshot's steps as data: every button of every step is a plain command that fits Telegram's 64-byte callback
data (so no button needs memory that a restart loses) and leads to the next step, and typed words say the same."""

from __future__ import annotations

import pytest

from bot.core.look_choice import parse_headshot
from pipeline.errors import SessionError
from pipeline.looks import ASPECTS, BACKDROPS, OUTFITS, Look
from pipeline.styles import PRESETS, custom_style, resolve_style

TELEGRAM_CALLBACK_BYTES = 64


def test_every_button_path_fits_a_callback_and_ends_in_the_chosen_style() -> None:
    ends = 0
    pending = [button.command for button in parse_headshot("").reply().buttons]
    asked = ["style"]
    while pending:
        command = pending.pop()
        assert len(command.encode()) <= TELEGRAM_CALLBACK_BYTES, command
        wanted = parse_headshot(command.removeprefix("/headshot "))
        if wanted.asking is None:
            ends += 1
            continue
        asked.append(wanted.asking)
        pending += [button.command for button in wanted.reply().buttons]
    assert ends == len(PRESETS) * len(BACKDROPS) * len(OUTFITS) * len(ASPECTS)
    assert set(asked) == {"style", "backdrop", "outfit", "aspect"}
    final = parse_headshot("bw books turtleneck portrait").style()
    assert final == resolve_style("black-and-white", Look("books", "turtleneck", "portrait"))


def test_typed_choices_by_key_or_bare_word_are_the_same() -> None:
    keyed = parse_headshot("linkedin backdrop:studio outfit:suit aspect:square")
    assert keyed.asking is None
    assert (
        keyed.style()
        == parse_headshot("LinkedIn grey suit 1:1").style()
        == parse_headshot("linkedin ? studio suit square").style()
    )
    assert keyed.style().aspect == (1, 1)
    # Left out: the preset's own; "?" asks only what was not said.
    assert parse_headshot("linkedin aspect:square").style() == resolve_style("linkedin", Look(aspect="square"))
    assert parse_headshot("linkedin suit ?").asking == "backdrop"
    assert parse_headshot("linkedin studio suit ?").asking == "aspect"


def test_the_users_own_words_get_the_same_steps_with_keyed_buttons() -> None:
    wanted = parse_headshot("navy suit on a rooftop ?")
    reply = wanted.reply()
    assert reply.text == "Custom: which backdrop?"
    assert reply.buttons[0].label == "As you described (default)"
    assert reply.buttons[0].command == "/headshot navy suit on a rooftop backdrop:default outfit:? aspect:?"
    last = parse_headshot("navy suit on a rooftop backdrop:default outfit:default aspect:portrait")
    assert last.asking is None and last.style() == custom_style("navy suit on a rooftop", Look(aspect="portrait"))
    # Words with a colon in them stay the user's own.
    assert parse_headshot("rooftop at dusk vibe:retro").style().prompt.endswith("rooftop at dusk vibe:retro")


@pytest.mark.parametrize(
    ("words", "said"),
    [
        ("linkedin backdrop:moon", "There is no backdrop called 'moon'. Pick one of: office, studio, white"),
        ("linkedin outfit:cape", "There is no outfit called 'cape'. Pick one of: suit, blazer"),
        ("linkedin ar:16:9", "There is no aspect called '16:9'. Pick one of: square, profile, portrait"),
        ("linkedin colour:red", "I don't know the option 'colour:'. /headshot takes backdrop:, outfit: and aspect:"),
        ("backdrp:office", "I don't know the option 'backdrp:'"),
    ],
)
def test_an_unknown_choice_is_refused_naming_the_valid_ones(words: str, said: str) -> None:
    with pytest.raises(SessionError, match="^" + said.replace("(", r"\(").replace("?", r"\?")):
        parse_headshot(words)
