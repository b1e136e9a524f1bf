"""Headshot styles as data: a prompt around the user's identifier token, a negative prompt and render settings.

Pure data and no torch, so the bot can list and validate styles without the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import UnknownStyle

__all__ = ["IDENTIFIER_TOKEN", "STYLES", "Style", "resolve_style"]

# A rare token the LoRA binds to the user's face (DreamBooth's "sks" convention), followed by the class word.
IDENTIFIER_TOKEN = "sks person"

_NEGATIVE_COMMON = (
    "blurry, lowres, deformed face, asymmetric eyes, extra fingers, watermark, text, logo, cropped head, "
    "oversaturated, cartoon, painting"
)


@dataclass(frozen=True)
class Style:
    """One headshot look. ``prompt`` holds ``{subject}``, replaced by the identifier token."""

    name: str
    title: str
    prompt: str
    negative_prompt: str = _NEGATIVE_COMMON
    # Portrait 4:5 at about one megapixel on SDXL; scaled down to the model's own size for small models.
    aspect: tuple[int, int] = (4, 5)
    steps: int = 30
    guidance_scale: float = 6.0

    def render_prompt(self, subject: str = IDENTIFIER_TOKEN) -> str:
        return self.prompt.format(subject=subject)


STYLES: dict[str, Style] = {
    style.name: style
    for style in (
        Style(
            "linkedin",
            "LinkedIn profile",
            "professional linkedin headshot photo of {subject}, friendly smile, business casual blazer, "
            "soft office background bokeh, natural window light, 85mm lens, sharp focus on the eyes",
        ),
        Style(
            "corporate",
            "Corporate portrait",
            "corporate executive portrait of {subject}, dark suit, neutral grey studio backdrop, "
            "three-point lighting, confident expression, high-end retouching, 85mm",
        ),
        Style(
            "studio",
            "Studio portrait",
            "studio portrait photo of {subject}, seamless white backdrop, softbox key light, rim light, "
            "crisp detail, editorial magazine quality",
        ),
        Style(
            "casual",
            "Casual",
            "casual portrait photo of {subject}, relaxed smile, knit sweater, warm cafe background, "
            "golden hour light, shallow depth of field",
            guidance_scale=5.0,
        ),
        Style(
            "outdoor",
            "Outdoor",
            "outdoor portrait of {subject} in a city park, natural daylight, green trees bokeh behind, "
            "light jacket, candid professional photo",
            guidance_scale=5.0,
        ),
        Style(
            "creative",
            "Creative professional",
            "creative professional portrait of {subject}, colourful gel lighting, modern design studio, "
            "stylish outfit, artistic composition",
            guidance_scale=7.0,
        ),
        Style(
            "black-and-white",
            "Black and white",
            "black and white portrait photograph of {subject}, dramatic side lighting, fine film grain, "
            "timeless classic look",
            negative_prompt=_NEGATIVE_COMMON + ", colour",
        ),
        Style(
            "actor",
            "Actor headshot",
            "theatrical actor headshot of {subject}, looking straight into the camera, even soft light, "
            "plain dark background, true-to-life skin texture",
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
        raise UnknownStyle(f"There is no style called '{name.strip()}'. Pick one of: {choices}.")
    return style
