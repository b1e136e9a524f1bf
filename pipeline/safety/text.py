"""Screening a user's own words (free-text styles, remix words) before anything is queued.

Words are normalised before they are matched, so the usual disguises read as the word they hide: case and width
(NFKC, case folding), zero-width and other invisible characters, accents, look-alike letters from other alphabets,
leetspeak ("p0rn", "$exy"), letters spaced or dotted apart ("n u d e", "n.u.d.e") and stretched ("nuuude").
Matching is on whole words and phrases (``pipeline.safety.words``), never on parts of words.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from itertools import product

from pipeline.errors import Reason, UnsafeWords
from pipeline.safety.words import (
    CONFUSABLES,
    LEET,
    MINOR,
    MINOR_AGE_UNITS,
    NUMBER_WORDS,
    PUBLIC_FIGURES,
    SEXUAL,
)

__all__ = ["Concern", "check_words", "normalise", "readings", "screen"]


class Concern(StrEnum):
    """Why words are refused; the most serious one found is reported."""

    MINOR = "minor"
    SEXUAL = "sexual"
    PUBLIC_FIGURE = "public_figure"


_REASONS = {
    Concern.MINOR: Reason.UNSAFE_MINOR,
    Concern.SEXUAL: Reason.UNSAFE_SEXUAL,
    Concern.PUBLIC_FIGURE: Reason.UNSAFE_PUBLIC_FIGURE,
}


def _whole_words(phrases: frozenset[str]) -> re.Pattern[str]:
    # Longest first, so a phrase wins over a word it starts with; bounded by non-alphanumerics on both sides.
    alternatives = "|".join(re.escape(phrase) for phrase in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")


# Longest number words first, so "seventeen" is read whole rather than as "seven".
_NUMBERS = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
_AGES = rf"\d{{1,2}}|{_NUMBERS}"
_UNITS = "|".join(re.escape(unit) for unit in MINOR_AGE_UNITS)
_AGE = re.compile(rf"(?<![a-z0-9])(?:(?:{_AGES}) ?(?:{_UNITS})|aged? (?:{_AGES}))(?![a-z0-9])")
# In the order a match is reported: the most serious first.
_PATTERNS = (
    (Concern.MINOR, _whole_words(MINOR)),
    (Concern.SEXUAL, _whole_words(SEXUAL)),
    (Concern.PUBLIC_FIGURE, _whole_words(PUBLIC_FIGURES)),
)


def screen(text: str) -> Concern | None:
    """What ``text`` asks for that we refuse to render (the most serious concern), or None when it is fine."""
    texts = readings(text)
    for concern, pattern in _PATTERNS:
        if any(pattern.search(reading) for reading in texts):
            return concern
        if concern == Concern.MINOR and any(_is_minor_age(reading) for reading in texts):
            return concern
    return None


def check_words(text: str) -> None:
    """Raise ``UnsafeWords`` (its reason names the concern, never the words) when ``screen`` refuses ``text``."""
    concern = screen(text)
    if concern is not None:
        raise UnsafeWords(f"words refused as {concern}", reason=_REASONS[concern])


def normalise(text: str) -> str:
    """``text`` in the one reading a person sees in it: "N.U.D.Е" (a Cyrillic Е) -> "nude", "p0rn" -> "porn"."""
    return " ".join(_merge_letters(_join_inside_words(_leet(_letters(text), one="i"))))


def readings(text: str) -> frozenset[str]:
    """Every reading ``screen`` matches against: digits as digits and as letters ("1" as "i" and as "l"), words split
    at and joined over punctuation, spaced-apart letters merged or not, stretched letters squeezed or not."""
    base = _letters(text)
    found = set()
    for plain in (base, _leet(base, one="i"), _leet(base, one="l")):
        for split, merge in product((_split_at_punctuation, _join_inside_words), (True, False)):
            words = split(plain)
            joined = " ".join(_merge_letters(words) if merge else words)
            found |= {joined, _squeeze(joined, 2), _squeeze(joined, 1)}
    return frozenset(found)


def _letters(text: str) -> str:
    """NFKC and case folded, accents and invisible characters dropped, look-alike letters as Latin."""
    folded = unicodedata.normalize("NFKC", text).translate(CONFUSABLES).casefold()
    decomposed = unicodedata.normalize("NFD", folded)
    # Marks (accents) and format characters (zero-width spaces and joiners, bidi controls) carry no letter.
    kept = "".join(char for char in decomposed if unicodedata.category(char) not in ("Mn", "Me", "Cf"))
    return unicodedata.normalize("NFC", kept).translate(CONFUSABLES)


def _leet(text: str, *, one: str) -> str:
    return "".join(LEET.get(char, one if char in "1|" else char) for char in text)


def _split_at_punctuation(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text)


def _join_inside_words(text: str) -> list[str]:
    """Words split at whitespace only, with what is not a letter or digit dropped: "n.u.d.e" -> "nude"."""
    words = (re.sub(r"[^a-z0-9]", "", chunk) for chunk in text.split())
    return [word for word in words if word]


def _merge_letters(words: list[str]) -> list[str]:
    """Runs of two or more one-letter words as one word: "n u d e" -> "nude"."""
    merged: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)
            continue
        merged.extend(["".join(run)] if len(run) > 1 else run)
        run = []
        if word:
            merged.append(word)
    return merged


def _squeeze(text: str, keep: int) -> str:
    """Runs of three or more of one character cut to ``keep``: "nuuude" -> "nude" (1) or "nuude" (2)."""
    return re.sub(r"(.)\1{2,}", lambda match: match.group(1) * keep, text)


def _is_minor_age(reading: str) -> bool:
    for match in _AGE.finditer(reading):
        number = re.search(rf"\d+|{_NUMBERS}", match.group(0))
        value = number.group(0) if number is not None else ""
        if value and (int(value) if value.isdigit() else NUMBER_WORDS[value]) < 18:
            return True
    return False
