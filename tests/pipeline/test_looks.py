"""What to wear, where, what shape: every preset with every backdrop, outfit and aspect composes a style whose
prompt fits the text encoder of each family, and the worker renders each aspect at a size the model takes."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from pipeline.diffusion.flux2_rendering import PIPELINE_PROMPT_LENGTH
from pipeline.diffusion.flux2_tiny import qwen_tokenizer
from pipeline.diffusion.generation import generate_headshots, headshot_size
from pipeline.diffusion.sdxl_tiny import write_tokenizer_files
from pipeline.looks import ASPECTS, BACKDROPS, OUTFITS, Look, bare_choice
from pipeline.styles import PRESETS, STYLES, custom_style, resolve_style
from pipeline.subject import Subject

EVERY_LOOK = [Look(*choice) for choice in itertools.product(BACKDROPS, OUTFITS, ASPECTS)]
EVERY_STYLE = [preset.style(look) for preset in PRESETS.values() for look in EVERY_LOOK]
LONGEST_SUBJECT = Subject("woman", "70s", glasses=True).phrase()  # "sks woman in her seventies wearing glasses"


def test_a_preset_alone_is_its_own_backdrop_outfit_and_the_profile_aspect() -> None:
    linkedin = STYLES["linkedin"]
    assert linkedin.render_prompt().startswith(
        "professional linkedin headshot photo of sks person, friendly smile, business casual blazer, soft office"
    )
    assert linkedin.aspect == (4, 5) and linkedin.title == "LinkedIn profile"
    chosen = resolve_style("LinkedIn", Look("studio", "suit", "square"))
    assert "dark suit, neutral grey studio backdrop" in chosen.render_prompt()
    assert "in a dark suit in front of a neutral grey studio backdrop" in chosen.render_sentence()
    assert "blazer" not in chosen.render_prompt() + chosen.render_sentence()
    assert (chosen.name, chosen.aspect) == ("linkedin", (1, 1))
    assert chosen.title == "LinkedIn profile (studio grey, dark suit, 1:1)"
    # Every preset names choices that exist, and a bare word names one thing only.
    assert all(preset.backdrop in BACKDROPS and preset.outfit in OUTFITS for preset in PRESETS.values())
    names = [*BACKDROPS, *OUTFITS, *ASPECTS]
    assert len(set(names)) == len(names) and all(bare_choice(name) is not None for name in names)


def test_the_users_own_words_take_a_backdrop_outfit_and_aspect_only_when_asked() -> None:
    plain = custom_style("navy suit on a rooftop")
    assert plain.render_prompt() == "professional headshot photo of sks person, navy suit on a rooftop"
    assert plain.aspect == (4, 5) and plain.title == "Custom"
    chosen = custom_style("smiling", Look("city", None, "portrait"))
    assert chosen.render_prompt() == "professional headshot photo of sks person, smiling, city street bokeh behind"
    assert chosen.render_sentence() == (
        "A professional headshot photo of sks person with a city street blurred behind: smiling"
    )
    assert (chosen.aspect, chosen.title) == ((2, 3), "Custom (city street, 2:3)")


def test_every_combination_fits_clips_77_tokens(tmp_path: Path) -> None:
    """The tiny SDXL's tokenizer (CLIP's byte-level BPE, whole-word merges for every word of these prompts, as the
    real vocabulary has them) counts what SDXL's two CLIP encoders read; past 77 they would cut the prompt short."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(tmp_path)
    tokenizer = CLIPTokenizer.from_pretrained(str(tmp_path), model_max_length=77)
    count, title = max(
        (len(tokenizer(style.render_prompt(LONGEST_SUBJECT), truncation=False).input_ids), style.title)
        for style in EVERY_STYLE
    )
    assert count <= 77, f"{title}: {count} tokens"


def test_every_combination_fits_kleins_prompt_length() -> None:
    """klein pads and cuts prompts at 512 tokens; a byte-level BPE token holds at least one byte, so a chat-wrapped
    sentence of at most 512 bytes fits on the real model, and the tiny model's own count fits its shorter length."""
    tokenizer = qwen_tokenizer()
    worst = 0
    for style in EVERY_STYLE:
        messages = [{"role": "user", "content": style.render_sentence(LONGEST_SUBJECT)}]
        wrapped = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert len(wrapped.encode()) <= PIPELINE_PROMPT_LENGTH, style.title
        worst = max(worst, len(tokenizer(wrapped).input_ids))
    assert worst <= tokenizer.model_max_length


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_each_aspect_renders_at_its_shape(pipe: Any, aspect: str) -> None:
    renders_at_its_shape(pipe, aspect)


def renders_at_its_shape(pipe: Any, aspect: str) -> None:
    """One headshot in ``aspect`` comes out at ``headshot_size``, whose sides the model takes, in that shape."""
    style = resolve_style("studio", Look(aspect=aspect))
    (generated,) = generate_headshots(pipe, style, count=1, seed=1, steps=1)
    width, height = generated.image.size
    assert (width, height) == headshot_size(pipe, ASPECTS[aspect].ratio)
    ratio_w, ratio_h = ASPECTS[aspect].ratio
    assert abs(width / height - ratio_w / ratio_h) < 0.15, (width, height)
