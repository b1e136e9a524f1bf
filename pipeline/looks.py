"""What to wear, where, what shape: the backdrops, outfits and aspects a headshot's style is composed with.

Pure data and no torch, so the bot can offer and check the choices without the model. Each backdrop and outfit has
a keyword phrase for SDXL's prompt and a phrase of a sentence for klein's; ``pipeline.styles`` puts them in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ASK",
    "ASPECTS",
    "BACKDROPS",
    "DEFAULT_ASPECT",
    "DEFAULT_VALUE",
    "LOOK_KEYS",
    "OUTFITS",
    "Aspect",
    "Look",
    "Part",
    "UnknownLookOption",
    "UnknownLookValue",
    "bare_choice",
    "choices_of",
    "keyed_choice",
]


@dataclass(frozen=True)
class Part:
    """A backdrop or an outfit: ``keywords`` go into SDXL's prompt, ``words`` (beginning with a preposition, "in a
    dark suit") into klein's sentence. Both are short: every combination must fit CLIP's 77 tokens."""

    name: str
    title: str
    keywords: str
    words: str


@dataclass(frozen=True)
class Aspect:
    name: str
    title: str
    ratio: tuple[int, int]  # width : height


BACKDROPS: dict[str, Part] = {
    part.name: part
    for part in (
        Part("office", "Office", "soft office background bokeh", "with a blurred office behind"),
        Part("studio", "Studio grey", "neutral grey studio backdrop", "in front of a neutral grey studio backdrop"),
        Part("white", "Plain white", "seamless white backdrop", "against a seamless white backdrop"),
        Part("dark", "Plain dark", "plain dark background", "against a plain dark background"),
        Part("city", "City street", "city street bokeh behind", "with a city street blurred behind"),
        Part("park", "Park", "city park, green trees bokeh behind", "in a park with green trees blurred behind"),
        Part("cafe", "Café", "warm cafe background", "in a warm cafe softly out of focus"),
        Part("books", "Bookshelf", "bookshelf background bokeh", "with a bookshelf blurred behind"),
        Part("design", "Design studio", "modern design studio", "in a modern design studio"),
    )
}
OUTFITS: dict[str, Part] = {
    part.name: part
    for part in (
        Part("suit", "Dark suit", "dark suit", "in a dark suit"),
        Part("blazer", "Blazer", "business casual blazer", "in a business casual blazer"),
        Part("smart", "Smart casual", "smart casual shirt", "in a smart casual shirt"),
        Part("sweater", "Knit sweater", "knit sweater", "in a knit sweater"),
        Part("jacket", "Light jacket", "light jacket", "in a light jacket"),
        Part("turtleneck", "Turtleneck", "black turtleneck", "in a black turtleneck"),
        Part("tshirt", "Plain T-shirt", "plain t-shirt", "in a plain t-shirt"),
        Part("stylish", "Stylish outfit", "stylish outfit", "in a stylish outfit"),
    )
}
ASPECTS: dict[str, Aspect] = {
    aspect.name: aspect
    for aspect in (
        Aspect("square", "Square 1:1 (avatar)", (1, 1)),
        Aspect("profile", "Profile 4:5", (4, 5)),
        Aspect("portrait", "Portrait 2:3", (2, 3)),
    )
}
DEFAULT_ASPECT = "profile"
# The typed keys (``backdrop:studio``) and the other names users reach for first.
LOOK_KEYS = ("backdrop", "outfit", "aspect")
ASK = "?"  # a value, or a word of its own: ask with buttons
DEFAULT_VALUE = "default"
_KEY_ALIASES = {
    "backdrop": "backdrop",
    "background": "backdrop",
    "bg": "backdrop",
    "outfit": "outfit",
    "wear": "outfit",
    "clothes": "outfit",
    "aspect": "aspect",
    "ar": "aspect",
    "ratio": "aspect",
    "shape": "aspect",
}
_VALUE_ALIASES = {"grey": "studio", "gray": "studio", "outdoors": "park", "bookshelf": "books", "t-shirt": "tshirt"}
_KEYED = re.compile(r"(?P<key>[a-z_-]+):(?P<value>.*)")


@dataclass(frozen=True)
class Look:
    """The user's choices, each a key of its table, or None for the style's default."""

    backdrop: str | None = None
    outfit: str | None = None
    aspect: str | None = None


class UnknownLookOption(ValueError):
    """A typed ``key:value`` whose key is none of ``LOOK_KEYS``."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no option {key!r}")
        self.key = key


class UnknownLookValue(ValueError):
    """A typed ``key:value`` whose value names nothing of that key; ``choices`` lists what does."""

    def __init__(self, key: str, value: str) -> None:
        super().__init__(f"no {key} {value!r}")
        self.key = key
        self.value = value
        self.choices = ", ".join(choices_of(key))


def choices_of(key: str) -> dict[str, str]:
    """Name -> title of every choice for ``key`` (one of ``LOOK_KEYS``)."""
    if key == "aspect":
        return {name: aspect.title for name, aspect in ASPECTS.items()}
    return {name: part.title for name, part in (BACKDROPS if key == "backdrop" else OUTFITS).items()}


def keyed_choice(token: str) -> tuple[str, str | None] | None:
    """``(key, name)`` for a typed ``backdrop:studio`` (name None for ``:default``; ``ASK`` for ``:?`` or nothing
    after the colon); None for a token without a colon.

    A ``word:`` whose word is no key raises ``UnknownLookOption``; a key with a value it lacks, ``UnknownLookValue``.
    """
    keyed = _KEYED.fullmatch(token.strip().lower())
    if keyed is None:
        return None
    key = _KEY_ALIASES.get(keyed["key"])
    if key is None:
        raise UnknownLookOption(keyed["key"])
    value = keyed["value"]
    if value in ("", ASK):
        return key, ASK
    if value == DEFAULT_VALUE:
        return key, None
    found = bare_choice(value)
    if found is None or found[0] != key:
        raise UnknownLookValue(key, value)
    return found


def bare_choice(word: str) -> tuple[str, str] | None:
    """``(key, name)`` for a word that names a backdrop, outfit or aspect ("studio", "suit", "square", "4:5")."""
    word = word.strip().lower()
    word = _VALUE_ALIASES.get(word, word)
    for key, table in (("backdrop", BACKDROPS), ("outfit", OUTFITS), ("aspect", ASPECTS)):
        if word in table:
            return key, word
    ratio = next((name for name, aspect in ASPECTS.items() if word == "{}:{}".format(*aspect.ratio)), None)
    return ("aspect", ratio) if ratio is not None else None
