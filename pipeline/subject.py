"""Who the user is, as the prompts say it: woman, man or person, optionally an age range and glasses.

Pure data and no torch, so the bot can parse ``/train`` words and show the choice without the model. The LoRA binds
the face to the identifier "sks" followed by this description, the description alone is the prior-preservation
class, and every style prompt names the subject the same way, so training and rendering agree.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AGES", "IDENTIFIER", "KINDS", "Subject", "UnknownSubjectWord", "parse_subject_words"]

# DreamBooth's rare token, which the LoRA binds to the user's face.
IDENTIFIER = "sks"
KINDS = ("woman", "man", "person")
# Decades, as words: CLIP reads "thirties" as one token, where "30s" costs three and means less to it.
AGES = {"20s": "twenties", "30s": "thirties", "40s": "forties", "50s": "fifties", "60s": "sixties", "70s": "seventies"}
_PRONOUN = {"woman": "her", "man": "his", "person": "their"}
_GLASSES = {"glasses": True, "no-glasses": False, "noglasses": False}
_ANY_AGE = ("any-age", "anyage")


@dataclass(frozen=True)
class Subject:
    """``kind`` is one of ``KINDS``; ``age`` a key of ``AGES`` or None; ``glasses`` whether they wear them."""

    kind: str = "person"
    age: str | None = None
    glasses: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Subject.kind must be one of {', '.join(KINDS)}, but is {self.kind!r}.")
        if self.age is not None and self.age not in AGES:
            raise ValueError(f"Subject.age must be one of {', '.join(AGES)} or None, but is {self.age!r}.")

    def describe(self) -> str:
        """The description without the identifier: "woman in her thirties wearing glasses"."""
        words = [self.kind]
        if self.age is not None:
            words.append(f"in {_PRONOUN[self.kind]} {AGES[self.age]}")
        if self.glasses:
            words.append("wearing glasses")
        return " ".join(words)

    def phrase(self) -> str:
        """What the style prompts' ``{subject}`` becomes: the identifier and the description."""
        return f"{IDENTIFIER} {self.describe()}"

    def reference_phrase(self) -> str:
        """What ``{subject}`` becomes when rendering from reference photos: no identifier (nothing was trained), the
        person the photos show."""
        return f"the {self.describe()} shown in the reference photos"

    @property
    def caption(self) -> str:
        """The caption every selfie trains under."""
        return f"a photo of {self.phrase()}"

    @property
    def class_prompt(self) -> str:
        """Prior preservation's prompt: the class noun alone (DreamBooth's "a [class noun]"), so only the identifier
        learns the face and the worker keeps one set of class images per kind, not one per age and glasses."""
        return f"a photo of a {self.kind}"

    def words(self) -> str:
        """The ``/train`` words that give this subject back (``parse_subject_words``); also how the store keeps it."""
        words = [self.kind]
        if self.age is not None:
            words.append(self.age)
        if self.glasses:
            words.append("glasses")
        return " ".join(words)

    @classmethod
    def from_words(cls, words: str | None) -> Subject:
        """The subject a ``words()`` string names; None or empty (rows and payloads from before subjects): a person."""
        return parse_subject_words(words or "", cls())


class UnknownSubjectWord(ValueError):
    """A ``/train`` word that describes no subject; ``word`` is it, for the reply."""

    def __init__(self, word: str) -> None:
        super().__init__(f"{word!r} describes no subject")
        self.word = word


def parse_subject_words(text: str, current: Subject) -> Subject:
    """``current`` changed by each word of ``text`` ("woman", "30s", "glasses", "no-glasses", "any-age"); a word that
    is none of those raises ``UnknownSubjectWord``."""
    kind, age, glasses = current.kind, current.age, current.glasses
    for word in text.lower().split():
        word = word.strip(",")
        if word in KINDS:
            kind = word
        elif word in AGES or word in AGES.values():
            age = word if word in AGES else next(key for key, name in AGES.items() if name == word)
        elif word in _ANY_AGE:
            age = None
        elif word in _GLASSES:
            glasses = _GLASSES[word]
        else:
            raise UnknownSubjectWord(word)
    return Subject(kind, age, glasses)
