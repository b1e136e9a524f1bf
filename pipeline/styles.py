"""Headshot styles as data: a prompt around the user's identifier token, a negative prompt and render settings.

A preset names its own backdrop and outfit (``pipeline.looks``), which the user may swap, and the aspect; the
``Style`` composed from them is what a job carries, so the worker renders it as it is.

Pure data and no torch, so the bot can list and validate styles without the model.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from pipeline.errors import BadStyleDescription, Reason, UnknownStyle
from pipeline.looks import ASPECTS, BACKDROPS, DEFAULT_ASPECT, OUTFITS, Aspect, Look, Part
from pipeline.safety.text import check_words
from pipeline.subject import Subject

__all__ = [
    "CUSTOM_STYLE_MAX_CHARS",
    "CUSTOM_STYLE_NAME",
    "CUSTOM_STYLE_TITLE",
    "DEFAULT_SCHEDULER",
    "IDENTIFIER_TOKEN",
    "PRESETS",
    "SCHEDULERS",
    "STYLES",
    "Preset",
    "Style",
    "custom_style",
    "remix_style",
    "resolve_preset",
    "resolve_style",
]

# A rare token the LoRA binds to the user's face (DreamBooth's "sks" convention), followed by the class word: what
# ``{subject}`` becomes for a user who described themselves no further (``pipeline.subject``).
IDENTIFIER_TOKEN = Subject().phrase()

_NEGATIVE_COMMON = (
    "blurry, lowres, deformed face, asymmetric eyes, extra fingers, watermark, text, logo, cropped head, "
    "oversaturated, cartoon, painting"
)

# Sampler names a style may ask for; pipeline.diffusion.generation maps each to a diffusers scheduler.
# DPM++ 2M Karras gives SDXL's full quality in about 25-30 steps, where Euler needs more.
SCHEDULERS = ("euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim")
DEFAULT_SCHEDULER = "dpmpp_2m_karras"
CUSTOM_STYLE_MAX_CHARS = 300
# The name a free-text style carries in job payloads; the description travels beside it.
CUSTOM_STYLE_NAME = "custom"
CUSTOM_STYLE_TITLE = "Custom"
_OWN_LOOK = Look()  # no choice made: each preset's own backdrop and outfit, the default aspect


@dataclass(frozen=True)
class Style:
    """One headshot look. ``prompt`` (SDXL's keyword list) and ``sentence`` (the same look in plain words, for models
    whose text encoder is a language model, such as FLUX.2 [klein]) hold ``{subject}``, replaced by the user's
    ``Subject.phrase()``."""

    name: str
    title: str
    prompt: str
    negative_prompt: str = _NEGATIVE_COMMON
    # Portrait 4:5 at about one megapixel on SDXL; scaled down to the model's own size for small models.
    aspect: tuple[int, int] = (4, 5)
    steps: int = 30
    guidance_scale: float = 6.0
    scheduler: str = DEFAULT_SCHEDULER
    sentence: str = ""  # empty: the keyword prompt is used as it is

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(
                f"Style '{self.name}' asks for scheduler {self.scheduler!r}, which does not exist; "
                f"pick one of: {', '.join(SCHEDULERS)}."
            )
        if self.steps < 1:
            raise ValueError(f"Style '{self.name}' must render at least 1 step, but has steps={self.steps}.")

    def render_prompt(self, subject: str = IDENTIFIER_TOKEN) -> str:
        return self.prompt.format(subject=subject)

    def render_sentence(self, subject: str = IDENTIFIER_TOKEN) -> str:
        return (self.sentence or self.prompt).format(subject=subject)


def _titled(title: str, parts: list[Part], aspect: Aspect) -> str:
    """``title`` naming what differs from the style's own look: "LinkedIn profile (studio grey, 1:1)"."""
    changed = [part.title.lower() for part in parts]
    if aspect.name != DEFAULT_ASPECT:
        changed.append("{}:{}".format(*aspect.ratio))
    return f"{title} ({', '.join(changed)})" if changed else title


@dataclass(frozen=True)
class Preset:
    """A named style whose ``prompt`` and ``sentence`` hold ``{outfit}`` and ``{backdrop}`` besides ``{subject}``:
    ``style()`` puts the chosen backdrop and outfit (or the preset's own) in place and sets the aspect."""

    name: str
    title: str
    prompt: str
    sentence: str
    backdrop: str
    outfit: str
    negative_prompt: str = _NEGATIVE_COMMON
    guidance_scale: float = 6.0

    def style(self, look: Look = _OWN_LOOK) -> Style:
        backdrop = BACKDROPS[look.backdrop or self.backdrop]
        outfit = OUTFITS[look.outfit or self.outfit]
        aspect = ASPECTS[look.aspect or DEFAULT_ASPECT]
        swapped = [part for part, own in ((backdrop, self.backdrop), (outfit, self.outfit)) if part.name != own]
        return Style(
            self.name,
            _titled(self.title, swapped, aspect),
            self.prompt.format(subject="{subject}", backdrop=backdrop.keywords, outfit=outfit.keywords),
            self.negative_prompt,
            aspect.ratio,
            guidance_scale=self.guidance_scale,
            sentence=self.sentence.format(subject="{subject}", backdrop=backdrop.words, outfit=outfit.words),
        )


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "linkedin",
            "LinkedIn profile",
            "professional linkedin headshot photo of {subject}, friendly smile, {outfit}, {backdrop}, "
            "natural window light, 85mm lens, sharp focus on the eyes",
            "A professional LinkedIn headshot of {subject} smiling {outfit} {backdrop}, in soft window light, with "
            "the eyes in sharp focus.",
            backdrop="office",
            outfit="blazer",
        ),
        Preset(
            "corporate",
            "Corporate portrait",
            "corporate executive portrait of {subject}, {outfit}, {backdrop}, three-point lighting, "
            "confident expression, high-end retouching, 85mm",
            "A corporate executive portrait of {subject} {outfit}, looking confident {backdrop}, lit with "
            "three-point studio lighting.",
            backdrop="studio",
            outfit="suit",
        ),
        Preset(
            "studio",
            "Studio portrait",
            "studio portrait photo of {subject}, {outfit}, {backdrop}, softbox key light, rim light, crisp detail, "
            "editorial magazine quality",
            "A crisp studio portrait of {subject} {outfit} {backdrop}, lit by a softbox with a rim light, as in an "
            "editorial magazine.",
            backdrop="white",
            outfit="smart",
        ),
        Preset(
            "casual",
            "Casual",
            "casual portrait photo of {subject}, relaxed smile, {outfit}, {backdrop}, golden hour light, "
            "shallow depth of field",
            "A casual portrait of {subject} with a relaxed smile, {outfit} {backdrop}, in golden hour light with a "
            "shallow depth of field.",
            backdrop="cafe",
            outfit="sweater",
            guidance_scale=5.0,
        ),
        Preset(
            "outdoor",
            "Outdoor",
            "outdoor portrait of {subject}, {outfit}, {backdrop}, natural daylight, candid professional photo",
            "A candid outdoor portrait of {subject} {outfit} {backdrop}, in natural daylight.",
            backdrop="park",
            outfit="jacket",
            guidance_scale=5.0,
        ),
        Preset(
            "creative",
            "Creative professional",
            "creative professional portrait of {subject}, {outfit}, {backdrop}, colourful gel lighting, "
            "artistic composition",
            "An artistic portrait of {subject} {outfit} {backdrop}, lit with colourful gel lights.",
            backdrop="design",
            outfit="stylish",
            guidance_scale=7.0,
        ),
        Preset(
            "black-and-white",
            "Black and white",
            "black and white portrait photograph of {subject}, {outfit}, {backdrop}, dramatic side lighting, "
            "fine film grain, timeless classic look",
            "A timeless black and white portrait photograph of {subject} {outfit} {backdrop}, with dramatic side "
            "lighting and fine film grain.",
            backdrop="dark",
            outfit="turtleneck",
            negative_prompt=_NEGATIVE_COMMON + ", colour",
        ),
        Preset(
            "actor",
            "Actor headshot",
            "theatrical actor headshot of {subject}, looking straight into the camera, {outfit}, {backdrop}, "
            "even soft light, true-to-life skin texture",
            "A theatrical actor headshot of {subject} {outfit} looking straight into the camera in even soft light, "
            "{backdrop}, with true-to-life skin texture.",
            backdrop="dark",
            outfit="tshirt",
        ),
    )
}
# Each preset with its own backdrop, outfit and the default aspect: what ``/headshot linkedin`` renders.
STYLES: dict[str, Style] = {name: preset.style() for name, preset in PRESETS.items()}


def resolve_preset(name: str) -> Preset:
    """The preset called ``name`` (case and surrounding spaces ignored), or ``UnknownStyle`` naming the choices."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key in ("bw", "b&w", "black-white"):
        key = "black-and-white"
    preset = PRESETS.get(key)
    if preset is None:
        choices = ", ".join(PRESETS)
        # The name is echoed back: cut a flood of characters down so the reply stays readable (and under chat limits).
        shown = name.strip() if len(name.strip()) <= 40 else name.strip()[:39] + "…"
        raise UnknownStyle(f"no style {shown!r}", name=shown, choices=choices)
    return preset


def resolve_style(name: str, look: Look = _OWN_LOOK) -> Style:
    """The preset called ``name`` as ``look`` changes it (``resolve_preset`` says which names there are)."""
    return resolve_preset(name).style(look)


def custom_style(description: str, look: Look = _OWN_LOOK) -> Style:
    """A style from the user's own words, e.g. "in a navy suit on a rooftop at dusk", around the usual headshot prompt;
    a backdrop or outfit of ``look`` is added after the words (none: the words alone say what to wear and where).

    Control characters are dropped and whitespace collapsed; more than ``CUSTOM_STYLE_MAX_CHARS`` characters, or
    nothing left, raises ``ValueError`` saying so; words the safety screen refuses raise ``UnsafeWords``.
    """
    words = _words(description)
    parts = [part for part in (OUTFITS.get(look.outfit or ""), BACKDROPS.get(look.backdrop or "")) if part]
    aspect = ASPECTS[look.aspect or DEFAULT_ASPECT]
    return Style(
        CUSTOM_STYLE_NAME,
        _titled(CUSTOM_STYLE_TITLE, parts, aspect),
        ", ".join(["professional headshot photo of {subject}", words, *(part.keywords for part in parts)]),
        aspect=aspect.ratio,
        sentence=" ".join(["A professional headshot photo of {subject}", *(part.words for part in parts)])
        + ": "
        + words,
    )


def remix_style(base: Style, words: str, title: str) -> Style:
    """``base`` with the user's ``words`` (checked as ``custom_style`` checks them) right after its subject, where
    the prompt weighs most; its sampler, guidance and size stay, so the remix keeps the look it started from."""
    text = _words(words)
    head, _, rest = base.prompt.partition(", ")
    prompt = f"{head}, {text}, {rest}" if rest else f"{head}, {text}"
    return Style(
        CUSTOM_STYLE_NAME,
        title,
        prompt,
        base.negative_prompt,
        base.aspect,
        base.steps,
        base.guidance_scale,
        base.scheduler,
        sentence=f"{base.sentence.rstrip('.')}, {text}." if base.sentence else "",
    )


def _words(description: str) -> str:
    """A user's description, cleaned and checked (length, then the safety screen), with braces doubled so
    ``render_prompt`` keeps them literal."""
    # Control and format characters (newlines, bidi overrides, zero-width joiners) only serve to smuggle text.
    printable = "".join(" " if unicodedata.category(char).startswith("C") else char for char in description)
    text = re.sub(r"\s+", " ", printable).strip()
    if not text:
        raise BadStyleDescription("empty style description", reason=Reason.STYLE_EMPTY)
    if len(text) > CUSTOM_STYLE_MAX_CHARS:
        raise BadStyleDescription(
            f"style description of {len(text)} characters",
            reason=Reason.STYLE_TOO_LONG,
            length=len(text),
            limit=CUSTOM_STYLE_MAX_CHARS,
        )
    check_words(description)  # as sent: the invisible characters dropped above may have split a word in two
    return text.replace("{", "{{").replace("}", "}}")
