"""Headshot styles as data: a prompt around the user's identifier token, a negative prompt and render settings.

Pure data and no torch, so the bot can list and validate styles without the model.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from pipeline.errors import BadStyleDescription, Reason, UnknownStyle
from pipeline.safety.text import check_words
from pipeline.subject import Subject

__all__ = [
    "CUSTOM_STYLE_MAX_CHARS",
    "CUSTOM_STYLE_NAME",
    "CUSTOM_STYLE_TITLE",
    "DEFAULT_SCHEDULER",
    "IDENTIFIER_TOKEN",
    "SCHEDULERS",
    "STYLES",
    "Style",
    "custom_style",
    "remix_style",
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


STYLES: dict[str, Style] = {
    style.name: style
    for style in (
        Style(
            "linkedin",
            "LinkedIn profile",
            "professional linkedin headshot photo of {subject}, friendly smile, business casual blazer, "
            "soft office background bokeh, natural window light, 85mm lens, sharp focus on the eyes",
            sentence=(
                "A professional LinkedIn headshot of {subject} smiling in a business casual blazer, in soft "
                "window light, with a blurred office behind and the eyes in sharp focus."
            ),
        ),
        Style(
            "corporate",
            "Corporate portrait",
            "corporate executive portrait of {subject}, dark suit, neutral grey studio backdrop, "
            "three-point lighting, confident expression, high-end retouching, 85mm",
            sentence=(
                "A corporate executive portrait of {subject} in a dark suit, looking confident in front of a "
                "neutral grey studio backdrop, lit with three-point studio lighting."
            ),
        ),
        Style(
            "studio",
            "Studio portrait",
            "studio portrait photo of {subject}, seamless white backdrop, softbox key light, rim light, "
            "crisp detail, editorial magazine quality",
            sentence=(
                "A crisp studio portrait of {subject} against a seamless white backdrop, lit by a softbox with a "
                "rim light, as in an editorial magazine."
            ),
        ),
        Style(
            "casual",
            "Casual",
            "casual portrait photo of {subject}, relaxed smile, knit sweater, warm cafe background, "
            "golden hour light, shallow depth of field",
            sentence=(
                "A casual portrait of {subject} with a relaxed smile, wearing a knit sweater in a warm cafe, in "
                "golden hour light with the background softly out of focus."
            ),
            guidance_scale=5.0,
        ),
        Style(
            "outdoor",
            "Outdoor",
            "outdoor portrait of {subject} in a city park, natural daylight, green trees bokeh behind, "
            "light jacket, candid professional photo",
            sentence=(
                "A candid outdoor portrait of {subject} in a light jacket in a city park, in natural daylight "
                "with green trees blurred behind."
            ),
            guidance_scale=5.0,
        ),
        Style(
            "creative",
            "Creative professional",
            "creative professional portrait of {subject}, colourful gel lighting, modern design studio, "
            "stylish outfit, artistic composition",
            sentence=(
                "An artistic portrait of {subject} in a stylish outfit in a modern design studio, lit with "
                "colourful gel lights."
            ),
            guidance_scale=7.0,
        ),
        Style(
            "black-and-white",
            "Black and white",
            "black and white portrait photograph of {subject}, dramatic side lighting, fine film grain, "
            "timeless classic look",
            sentence=(
                "A timeless black and white portrait photograph of {subject} with dramatic side lighting and fine"
                " film grain."
            ),
            negative_prompt=_NEGATIVE_COMMON + ", colour",
        ),
        Style(
            "actor",
            "Actor headshot",
            "theatrical actor headshot of {subject}, looking straight into the camera, even soft light, "
            "plain dark background, true-to-life skin texture",
            sentence=(
                "A theatrical actor headshot of {subject} looking straight into the camera in even soft light, "
                "against a plain dark background, with true-to-life skin texture."
            ),
        ),
    )
}


def resolve_style(name: str) -> Style:
    """The preset called ``name`` (case and surrounding spaces ignored), or ``UnknownStyle`` naming the choices."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key in ("bw", "b&w", "black-white"):
        key = "black-and-white"
    style = STYLES.get(key)
    if style is None:
        choices = ", ".join(STYLES)
        # The name is echoed back: cut a flood of characters down so the reply stays readable (and under chat limits).
        shown = name.strip() if len(name.strip()) <= 40 else name.strip()[:39] + "…"
        raise UnknownStyle(f"no style {shown!r}", name=shown, choices=choices)
    return style


def custom_style(description: str) -> Style:
    """A style from the user's own words, e.g. "in a navy suit on a rooftop at dusk", around the usual headshot prompt.

    Control characters are dropped and whitespace collapsed; more than ``CUSTOM_STYLE_MAX_CHARS`` characters, or
    nothing left, raises ``ValueError`` saying so; words the safety screen refuses raise ``UnsafeWords``.
    """
    words = _words(description)
    return Style(
        CUSTOM_STYLE_NAME,
        CUSTOM_STYLE_TITLE,
        "professional headshot photo of {subject}, " + words,
        sentence="A professional headshot photo of {subject}: " + words,
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
