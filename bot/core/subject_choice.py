"""``/train woman 30s glasses``: how the pictures describe the user, chosen while selfies are collected.

The choice is kept with the session (``bot/store``), trained into the LoRA's caption and named in every prompt, so it
can change only until training starts; after that, ``/train new <words>`` starts a new model.
"""

from __future__ import annotations

from bot.core import texts
from bot.core.types import Button, Reply
from bot.store.schema import SessionRow
from pipeline.errors import SessionError
from pipeline.subject import Subject, UnknownSubjectWord, parse_subject_words

__all__ = ["described", "parse_words", "subject_intro", "subject_needs_new", "subject_reply"]


def described(session: SessionRow | None) -> str:
    """The session's subject as a user reads it: "a woman in her thirties wearing glasses"."""
    subject = session.subject if session is not None else Subject()
    return f"a {subject.describe()}"


def parse_words(words: str, current: Subject) -> Subject:
    """``current`` changed by the user's ``/train`` words; a word that describes nobody is refused, named."""
    try:
        return parse_subject_words(words, current)
    except UnknownSubjectWord as error:
        raise SessionError(texts.SUBJECT_UNKNOWN_WORD.format(word=texts.clip(error.word))) from None


def subject_needs_new(session: SessionRow, words: str) -> SessionError:
    """The refusal for ``/train woman`` once a model is trained: the words are checked, then shown with /train new."""
    wanted = parse_words(words, session.subject)
    return SessionError(texts.SUBJECT_NEEDS_NEW.format(described=described(session), words=wanted.words()))


def subject_intro(intro: str, session: SessionRow, *, chosen: bool) -> Reply:
    """A new session's first reply: what to send, and how the user is described (asked, unless they just said)."""
    if chosen:
        return Reply(f"{intro}\n\n{texts.SUBJECT_SET.format(described=described(session))}", _buttons(session))
    return Reply(f"{intro}\n\n{texts.SUBJECT_ASK}", texts.SUBJECT_BUTTONS)


def subject_reply(session: SessionRow, ready: bool) -> Reply:
    """After a choice while collecting: the description, how to add to it, and the buttons that change it (and
    start training, once there are enough selfies)."""
    extra = (texts.START_BUTTON,) if ready else ()
    return Reply(texts.SUBJECT_SET.format(described=described(session)), (*_buttons(session), *extra))


def _buttons(session: SessionRow) -> tuple[Button, ...]:
    return (*texts.SUBJECT_BUTTONS, texts.glasses_button(session.subject.glasses))
