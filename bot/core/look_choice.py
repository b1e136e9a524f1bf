"""``/headshot``'s choices: a style, then a backdrop, an outfit and an aspect, typed or tapped one step at a time.

``/headshot linkedin studio suit square`` (or ``backdrop:studio outfit:suit aspect:square``) renders at once, with
the style's own choice for whatever is left out; a ``?`` (or ``backdrop:?``) asks with buttons instead. Each button is
the command so far plus one choice, so the flow keeps no state: a button posted before a restart works after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.core import texts
from bot.core.types import Button, Reply
from pipeline.errors import SessionError, UnknownStyle
from pipeline.looks import (
    ASK,
    DEFAULT_ASPECT,
    DEFAULT_VALUE,
    LOOK_KEYS,
    Look,
    UnknownLookOption,
    UnknownLookValue,
    bare_choice,
    choices_of,
    keyed_choice,
)
from pipeline.styles import PRESETS, Preset, Style, custom_style, resolve_preset

__all__ = ["Wanted", "parse_headshot"]


@dataclass(frozen=True)
class Wanted:
    """What ``/headshot``'s words asked for: a preset or the user's own words (neither: the style is still to pick),
    and per key of ``LOOK_KEYS`` a choice, ``None`` (the style's own) or ``ASK``."""

    words: str = ""
    preset: Preset | None = None
    choices: dict[str, str | None] = field(default_factory=dict)

    @property
    def asking(self) -> str | None:
        """The first choice still to ask with buttons; None when the headshots can render."""
        if not self.words:
            return "style"
        return next((key for key in LOOK_KEYS if self.choices.get(key) == ASK), None)

    def style(self) -> Style:
        """The style to render; choices still to ask count as the style's own (``reply`` shows the title so far)."""
        look = Look(**{key: None if value == ASK else value for key, value in self.choices.items()})
        return self.preset.style(look) if self.preset is not None else custom_style(self.words, look)

    def reply(self) -> Reply:
        """The question of the step ``asking`` names, a button per answer (the style's own first)."""
        step = self.asking
        if step == "style":
            styles = tuple(Button(preset.title, self._command(preset.name)) for preset in PRESETS.values())
            return Reply(texts.HEADSHOT_NEEDS_STYLE, styles)
        assert step is not None
        own = self._own(step)
        names = choices_of(step)
        default = names[own] if own else texts.LOOK_AS_DESCRIBED
        buttons = [Button(texts.LOOK_DEFAULT.format(title=default), self._command(self.words, step, own))]
        buttons += [
            Button(title, self._command(self.words, step, name)) for name, title in names.items() if name != own
        ]
        return Reply(texts.LOOK_ASK[step].format(style=self.style().title), tuple(buttons))

    def _own(self, key: str) -> str | None:
        """The style's own choice for ``key``; None for the user's own words, which say where and what to wear."""
        if key == "aspect":
            return DEFAULT_ASPECT
        return getattr(self.preset, key) if self.preset is not None else None

    def _command(self, words: str, key: str | None = None, value: str | None = None) -> str:
        """``/headshot`` with these words, the choices so far and ``key`` set to ``value``; what is still to ask
        follows as ``?`` when that means the same (a preset's buttons stay under Telegram's 64 bytes), else by key."""
        choices = dict(self.choices)
        if key is not None:
            choices[key] = value if value is not None else DEFAULT_VALUE
        if not self.words:  # the style step: every choice not made yet is asked next
            choices = {key: choices.get(key, ASK) for key in LOOK_KEYS}
        chosen = {key: value for key, value in choices.items() if value not in (None, ASK)}
        asked = [key for key in LOOK_KEYS if choices.get(key) == ASK]
        bare = PRESETS.get(words) is not None and DEFAULT_VALUE not in chosen.values()
        parts = ["/headshot", words]
        parts += [value if bare else f"{key}:{value}" for key, value in chosen.items()]
        if asked and bare and asked == [key for key in LOOK_KEYS if key not in chosen]:
            parts.append(ASK)
        else:
            parts += [f"{key}:{ASK}" for key in asked]
        return " ".join(parts)


def parse_headshot(args: str) -> Wanted:
    """``/headshot``'s words as a ``Wanted``; an unknown option or value is refused, naming the valid ones.

    The words are a preset's name (then bare choices may follow: ``linkedin studio suit square``), or several words
    of the user's own; ``key:value`` words and a ``?`` may stand anywhere.
    """
    words: list[str] = []
    choices: dict[str, str | None] = {}
    unknown: dict[str, UnknownLookOption] = {}  # word -> its error, refused unless the words are the user's own
    ask_rest = False
    for token in args.split():
        if token == ASK:
            ask_rest = True
            continue
        try:
            found = keyed_choice(token)
        except UnknownLookValue as error:
            raise SessionError(
                texts.LOOK_UNKNOWN_VALUE.format(key=error.key, value=texts.clip(error.value), choices=error.choices)
            ) from None
        except UnknownLookOption as error:
            unknown[token], found = error, None
        if found is None:
            words.append(token)
        else:
            choices[found[0]] = found[1]

    # "linkedin colour:red" is a typo to refuse; "at the beach, vibe:retro" the user's own words.
    preset = _preset_of([word for word in words if word not in unknown], choices)
    if unknown and (preset is not None or len(words) < 2):
        raise SessionError(texts.LOOK_UNKNOWN_OPTION.format(option=texts.clip(next(iter(unknown.values())).key)))
    if ask_rest:
        choices = {key: choices.get(key, ASK) for key in LOOK_KEYS}
    if preset is None and len(words) == 1:
        resolve_preset(words[0])  # raises UnknownStyle, naming the styles
    return Wanted(preset.name if preset is not None else " ".join(words), preset, choices)


def _preset_of(words: list[str], choices: dict[str, str | None]) -> Preset | None:
    """The preset the words name, filling ``choices`` with the bare words after its name; None for other words."""
    if not words:
        return None
    try:
        return resolve_preset(" ".join(words))
    except UnknownStyle:
        pass
    bare = [bare_choice(word) for word in words[1:]]
    try:
        preset = resolve_preset(words[0])
    except UnknownStyle:
        return None
    if not all(bare):
        return None  # "studio shot of me laughing": the user's own words
    for found in bare:
        assert found is not None
        choices.setdefault(found[0], found[1])  # a typed key:value wins over a bare word
    return preset
